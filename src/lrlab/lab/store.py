"""The SQLite results store of the lab: trials, every metric they reported, claims on work.

Guarantees (what a caller may rely on, in the style of optuna's storage contract):

1. **Atomic trials.** A trial's outcome (its row, every per-epoch metric and its final metrics)
   is written in ONE transaction: a process killed at any moment (SIGKILL included) leaves the
   whole trial or nothing of it. The database runs in WAL mode with ``synchronous=FULL``.
2. **Nothing finished is lost.** A recorded outcome replaces an earlier one only if it is at
   least as good: ``done`` > ``diverged`` > ``failed`` (:data:`~lrlab.lab.contract.STATUS_RANK`).
   A failed or diverged retry never deletes a done trial; a failed trial is replaced by the
   next attempt that finishes.
3. **Nothing trained twice.** Before training, a run *claims* a trial (:meth:`Store.claim`):
   the claim names its owner (host, process id and a random id) and expires ``lease`` seconds
   after its last heartbeat (:meth:`Store.heartbeat`). A trial that is finished, or claimed by
   another live owner, cannot be claimed, so concurrent runs on one database share the work. A
   run killed without cleaning up (SIGKILL) leaves claims that expire, and then anyone may
   claim those trials; on the same machine, claims of an owner process that no longer runs are
   taken over at once. Recording a trial releases its claim.
4. **Identity.** A trial is identified by its spec's key (:meth:`TrialSpec.key`); the same spec
   is trained once whatever study or run asked for it. Study membership (which trial is cell
   ``(schedule, seed)`` of which study) is stored apart from the trials.
5. **Generic metrics.** Every metric a trial reports per epoch is kept under its own name (one
   row per trial, epoch and name; no fixed columns), and so are its final metrics. NaN is
   stored as NULL and read back as NaN.
6. **Versioned.** ``meta.schema_version`` is :data:`SCHEMA_VERSION`. A database of version 1
   (fixed accuracy columns) is migrated in place, in one transaction, when opened; any other
   version, or tables of another shape, or a value that is not a number, is a one-line
   :class:`~lrlab.errors.LrlabError` saying what to do. Every SQLite failure (a full disk, a
   read-only folder, a path that is a folder) is one line too.

Tables: ``meta``, ``studies`` (name, config JSON), ``study_trials`` (study, schedule, seed ->
trial key), ``trials`` (one row per recorded trial), ``metrics`` (trial, epoch, name, value),
``final_metrics`` (trial, name, value), ``attempts`` (one row each time a run started training
a trial: the execution log), ``claims`` (trial, owner, expires).
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lrlab.errors import LrlabError
from lrlab.lab.contract import (
    EPOCH_METRICS,
    FINISHED,
    STATUS_RANK,
    StoredTrial,
    TrialStatus,
)

SCHEMA_VERSION = 2
#: Per-epoch metric names of lrlab's trainer (other trials report any names).
EPOCH_COLUMNS = EPOCH_METRICS
#: Seconds a claim lives without a heartbeat (``LRLAB_LEASE_SECONDS`` overrides it, for tests).
DEFAULT_LEASE = 60.0
STATUSES = tuple(s.value for s in TrialStatus)

#: Every table and its columns: the schema below and the shape check on opening come from it.
TABLES: dict[str, tuple[str, ...]] = {
    "meta": ("key", "value"),
    "studies": ("name", "config", "updated"),
    "study_trials": ("study", "schedule", "seed", "trial_key"),
    "trials": ("key", "spec", "status", "error", "epochs_run", "wall_time", "finished"),
    "metrics": ("trial_key", "epoch", "name", "value"),
    "final_metrics": ("trial_key", "name", "value"),
    "attempts": ("id", "trial_key", "started", "pid", "owner"),
    "claims": ("trial_key", "owner", "expires"),
}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (name TEXT PRIMARY KEY, config TEXT NOT NULL,
    updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS study_trials (
    study TEXT NOT NULL REFERENCES studies(name) ON DELETE CASCADE,
    schedule TEXT NOT NULL, seed INTEGER NOT NULL, trial_key TEXT NOT NULL,
    PRIMARY KEY (study, schedule, seed));
CREATE TABLE IF NOT EXISTS trials (
    key TEXT PRIMARY KEY, spec TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    error TEXT, epochs_run INTEGER NOT NULL, wall_time REAL, finished REAL NOT NULL);
CREATE TABLE IF NOT EXISTS metrics (
    trial_key TEXT NOT NULL REFERENCES trials(key) ON DELETE CASCADE,
    epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
    PRIMARY KEY (trial_key, epoch, name));
CREATE TABLE IF NOT EXISTS final_metrics (
    trial_key TEXT NOT NULL REFERENCES trials(key) ON DELETE CASCADE,
    name TEXT NOT NULL, value REAL, PRIMARY KEY (trial_key, name));
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, trial_key TEXT NOT NULL, started REAL NOT NULL,
    pid INTEGER NOT NULL, owner TEXT);
CREATE INDEX IF NOT EXISTS attempts_key ON attempts(trial_key);
CREATE TABLE IF NOT EXISTS claims (trial_key TEXT PRIMARY KEY, owner TEXT NOT NULL,
    expires REAL NOT NULL);
"""

#: The version-1 layout's per-epoch columns and summary columns, for the migration.
_V1_EPOCH_COLUMNS = EPOCH_METRICS
_V1_FINAL = {
    "final_test_acc": "test_acc",
    "best_test_acc": "best_test_acc",
    "best_epoch": "best_epoch",
    "best_val_loss": "best_val_loss",
}


def new_owner() -> str:
    """A claim owner id: ``host:pid:random``, unique per run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): kill(pid, 0) is all we have
        return True


def owner_gone(owner: str) -> bool:
    """Whether a claim's owner is a process of this machine that no longer runs (a SIGKILLed
    run): its claims need not wait for their lease to expire."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))


def default_lease() -> float:
    text = os.environ.get("LRLAB_LEASE_SECONDS")
    try:
        lease = float(text) if text else DEFAULT_LEASE
    except ValueError:
        raise LrlabError(f"LRLAB_LEASE_SECONDS must be a number of seconds, got {text!r}") from None
    if not (math.isfinite(lease) and lease > 0):
        raise LrlabError(f"LRLAB_LEASE_SECONDS must be > 0, got {text!r}")
    return lease


def _real(value: Any) -> float | None:
    """A float to store: NaN becomes NULL."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


class Store:
    """The results database. ``Store(path)`` creates it (and its folder) if needed.

    Use it as a context manager or call :meth:`close`. One ``Store`` per thread.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise LrlabError(f"results database {self.path} is a folder; give a file path")
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, exist_ok=True)
            # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE).
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise LrlabError(f"cannot open results database {self.path}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate_or_refuse()
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._transaction() as cur:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        cur.execute(statement)
                cur.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            self._check_shape()
        except sqlite3.Error as exc:
            self._db.close()
            raise LrlabError(f"cannot use {self.path} as a results database: {exc}") from None
        except LrlabError:
            self._db.close()
            raise

    # ------------------------------------------------------------------ plumbing
    def _tables(self) -> set[str]:
        rows = self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        return {r[0] for r in rows}

    def _version(self) -> int | None:
        if "meta" not in self._tables():
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        try:
            return None if row is None else int(row[0])
        except (TypeError, ValueError):
            raise LrlabError(
                f"results database {self.path}: schema_version {row[0]!r} is not a number; "
                "use another --db"
            ) from None

    def _migrate_or_refuse(self) -> None:
        version = self._version()
        if version is None or version == SCHEMA_VERSION:
            return
        if version == 1:
            self._migrate_v1()
            return
        raise LrlabError(
            f"results database {self.path} has schema version {version}, this lrlab reads "
            f"versions 1 and {SCHEMA_VERSION}; use another --db (or a newer lrlab)"
        )

    def _migrate_v1(self) -> None:
        """Version 1 (fixed accuracy columns) to 2 (metrics by name), in one transaction."""
        with self._transaction() as cur:
            row = cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None or row[0] != "1":  # another process migrated it meanwhile
                return
            cur.execute("ALTER TABLE trials RENAME TO trials_v1")
            cur.execute("ALTER TABLE epochs RENAME TO epochs_v1")
            cur.execute("ALTER TABLE attempts RENAME TO attempts_v1")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    cur.execute(statement)
            cur.execute(
                "INSERT INTO trials(key, spec, status, error, epochs_run, wall_time, finished) "
                "SELECT key, spec, status, error, epochs_run, wall_time, finished FROM trials_v1"
            )
            for column in _V1_EPOCH_COLUMNS:
                cur.execute(
                    "INSERT INTO metrics(trial_key, epoch, name, value) "
                    f"SELECT trial_key, epoch, ?, {column} FROM epochs_v1",
                    (column,),
                )
            for column, name in _V1_FINAL.items():
                cur.execute(
                    "INSERT INTO final_metrics(trial_key, name, value) "
                    f"SELECT key, ?, {column} FROM trials_v1 WHERE status != 'failed'",
                    (name,),
                )
            cur.execute(
                "INSERT INTO attempts(id, trial_key, started, pid) "
                "SELECT id, trial_key, started, pid FROM attempts_v1"
            )
            cur.execute("DROP TABLE epochs_v1")
            cur.execute("DROP TABLE trials_v1")
            cur.execute("DROP TABLE attempts_v1")
            cur.execute(
                "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
            )

    def _check_shape(self) -> None:
        for table, columns in TABLES.items():
            found = tuple(r[1] for r in self._db.execute(f"PRAGMA table_info({table})"))
            if found != columns:
                raise LrlabError(
                    f"results database {self.path}: table {table} has columns "
                    f"({', '.join(found)}), expected ({', '.join(columns)}); it was not written "
                    "by this lrlab: use another --db"
                )

    class _Tx:
        def __init__(self, store: Store):
            self.store = store

        def __enter__(self) -> sqlite3.Cursor:
            try:
                self.cur = self.store._db.cursor()
                self.cur.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self.store._error(exc) from None
            return self.cur

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                self.cur.execute("ROLLBACK" if exc_type else "COMMIT")
            except sqlite3.Error as error:
                if exc_type is None:
                    raise self.store._error(error) from None
            if isinstance(exc, sqlite3.Error):
                raise self.store._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> LrlabError:
        return LrlabError(f"results database {self.path}: {exc}")

    def _transaction(self) -> Store._Tx:
        return Store._Tx(self)

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _number(self, value: Any, what: str) -> float:
        """A REAL read back: NULL is NaN; anything that is not a number is a one-line error."""
        if value is None:
            return math.nan
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise LrlabError(
            f"results database {self.path}: {what} holds {value!r}, not a number; "
            "the file was changed by something else than lrlab: use another --db"
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ studies
    def save_study(self, name: str, config: Mapping, cells: Iterable[tuple[str, int, str]]) -> None:
        """Record a study's settings and its cells ``(schedule, seed, trial_key)``, replacing any
        previous membership of that study name (recorded trials themselves are kept)."""
        now = time.time()
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO studies(name, config, updated) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET config=excluded.config, updated=excluded.updated",
                (name, json.dumps(config), now),  # key order kept: it is the schedules' order
            )
            cur.execute("DELETE FROM study_trials WHERE study=?", (name,))
            cur.executemany(
                "INSERT INTO study_trials(study, schedule, seed, trial_key) VALUES (?, ?, ?, ?)",
                [(name, schedule, int(seed), key) for schedule, seed, key in cells],
            )

    def study_config(self, name: str) -> dict:
        rows = self._query("SELECT config FROM studies WHERE name=?", (name,))
        if not rows:
            raise LrlabError(f"no study named {name!r} in {self.path}")
        try:
            return json.loads(rows[0][0])
        except (TypeError, ValueError):
            raise LrlabError(
                f"results database {self.path}: study {name!r} is unreadable"
            ) from None

    def study_names(self) -> list[str]:
        return [r[0] for r in self._query("SELECT name FROM studies ORDER BY name")]

    # ------------------------------------------------------------------ claims (leases)
    def claim(self, key: str, owner: str, lease: float | None = None) -> bool:
        """Claim trial ``key`` for ``owner`` for ``lease`` seconds; False when it is finished or
        claimed by another owner whose claim has not expired. A new claim logs an attempt; the
        owner's own claim is renewed."""
        lease = default_lease() if lease is None else float(lease)
        now = time.time()
        finished = tuple(s.value for s in FINISHED)
        with self._transaction() as cur:
            row = cur.execute(
                f"SELECT 1 FROM trials WHERE key=? AND status IN ({', '.join('?' * len(finished))})",
                (key, *finished),
            ).fetchone()
            if row is not None:
                return False
            held = cur.execute(
                "SELECT owner, expires FROM claims WHERE trial_key=?", (key,)
            ).fetchone()
            if held is not None and held[0] != owner and held[1] > now and not owner_gone(held[0]):
                return False
            cur.execute(
                "INSERT INTO claims(trial_key, owner, expires) VALUES (?, ?, ?) ON CONFLICT"
                "(trial_key) DO UPDATE SET owner=excluded.owner, expires=excluded.expires",
                (key, owner, now + lease),
            )
            if held is None or held[0] != owner:  # a renewal is not a new attempt
                cur.execute(
                    "INSERT INTO attempts(trial_key, started, pid, owner) VALUES (?, ?, ?, ?)",
                    (key, now, os.getpid(), owner),
                )
        return True

    def heartbeat(self, owner: str, lease: float | None = None) -> int:
        """Extend every claim of ``owner`` by ``lease`` seconds from now; the number extended."""
        lease = default_lease() if lease is None else float(lease)
        with self._transaction() as cur:
            cur.execute("UPDATE claims SET expires=? WHERE owner=?", (time.time() + lease, owner))
            return cur.rowcount

    def release(self, owner: str, keys: Iterable[str] | None = None) -> None:
        """Drop ``owner``'s claims (on ``keys``, or all of them)."""
        with self._transaction() as cur:
            if keys is None:
                cur.execute("DELETE FROM claims WHERE owner=?", (owner,))
            else:
                cur.executemany(
                    "DELETE FROM claims WHERE owner=? AND trial_key=?", [(owner, k) for k in keys]
                )

    def claimed_by_others(self, keys: Iterable[str], owner: str) -> set[str]:
        """Those of ``keys`` another owner holds a live claim on."""
        now = time.time()
        rows = self._query("SELECT trial_key, owner, expires FROM claims")
        wanted = set(keys)
        return {
            k for k, o, e in rows if k in wanted and o != owner and e > now and not owner_gone(o)
        }

    # ------------------------------------------------------------------ trials
    def finished_keys(self, keys: Iterable[str] | None = None) -> set[str]:
        """Keys of finished trials (``done`` or ``diverged``), among ``keys`` if given."""
        finished = tuple(s.value for s in FINISHED)
        rows = self._query(
            f"SELECT key FROM trials WHERE status IN ({', '.join('?' * len(finished))})", finished
        )
        done = {r[0] for r in rows}
        return done if keys is None else done & set(keys)

    def record_attempt(self, key: str, pid: int | None = None, owner: str | None = None) -> None:
        """Log that a trial was handed to an executor (the execution log; its own transaction).
        :meth:`claim` logs its attempts itself."""
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO attempts(trial_key, started, pid, owner) VALUES (?, ?, ?, ?)",
                (key, time.time(), os.getpid() if pid is None else pid, owner),
            )

    def attempts(self) -> dict[str, int]:
        """Trial key -> number of times a run started the trial."""
        rows = self._query("SELECT trial_key, COUNT(*) FROM attempts GROUP BY trial_key")
        return {k: n for k, n in rows}

    def record_trial(
        self,
        key: str,
        spec: Mapping,
        *,
        status: TrialStatus | str,
        epochs: Sequence[Mapping[str, float]] = (),
        final: Mapping[str, float] | None = None,
        error: str | None = None,
        wall_time: float | None = None,
    ) -> TrialStatus:
        """Write a trial's outcome, its metrics per epoch and its final metrics, in ONE
        transaction, and release any claim on it; return the status the store now holds.

        ``epochs`` holds one mapping per epoch: an ``epoch`` key (from 1) and metric values by
        name. An outcome replaces a recorded one only if its status ranks at least as high
        (``done`` > ``diverged`` > ``failed``): a failure never replaces a finished trial.
        """
        status = TrialStatus(status)
        metric_rows = [
            (key, int(e["epoch"]), str(name), _real(value))
            for e in epochs
            for name, value in e.items()
            if name != "epoch"
        ]
        final_rows = [(key, str(n), _real(v)) for n, v in (final or {}).items()]
        with self._transaction() as cur:
            row = cur.execute("SELECT status FROM trials WHERE key=?", (key,)).fetchone()
            cur.execute("DELETE FROM claims WHERE trial_key=?", (key,))
            if row is not None and STATUS_RANK[TrialStatus(row[0])] > STATUS_RANK[status]:
                return TrialStatus(row[0])
            cur.execute("DELETE FROM trials WHERE key=?", (key,))  # cascades to its metrics
            cur.execute(
                "INSERT INTO trials(key, spec, status, error, epochs_run, wall_time, finished) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    json.dumps(spec, sort_keys=True),
                    status.value,
                    error,
                    len({e["epoch"] for e in epochs}),
                    _real(wall_time),
                    time.time(),
                ),
            )
            cur.executemany(
                "INSERT OR REPLACE INTO metrics(trial_key, epoch, name, value) VALUES (?, ?, ?, ?)",
                metric_rows,
            )
            cur.executemany(
                "INSERT INTO final_metrics(trial_key, name, value) VALUES (?, ?, ?)", final_rows
            )
        return status

    def study_trials(self, study: str, *, with_epochs: bool = True) -> list[StoredTrial]:
        """The recorded trials of a study's cells, ordered as :meth:`save_study` listed the cells.

        Cells whose trial has not been recorded yet are left out. ``with_epochs=False`` leaves
        the per-epoch metrics out (``epochs`` and ``metrics`` empty).
        """
        rows = self._query(
            "SELECT st.schedule, st.seed, t.key, t.spec, t.status, t.error, t.wall_time "
            "FROM study_trials st JOIN trials t ON t.key = st.trial_key "
            "WHERE st.study = ? ORDER BY st.rowid",
            (study,),
        )
        out = []
        for schedule, seed, key, spec, status, error, wall_time in rows:
            epochs, metrics = self.metrics(key) if with_epochs else ([], {})
            out.append(
                StoredTrial(
                    schedule=schedule,
                    seed=int(seed),
                    key=key,
                    spec=self._json(spec, key),
                    status=self._status(status, key),
                    error=error,
                    wall_time=None if wall_time is None else self._number(wall_time, key),
                    epochs=epochs,
                    metrics=metrics,
                    final=self.final_metrics(key),
                )
            )
        return out

    def _json(self, text: Any, key: str) -> dict:
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, dict):
            raise LrlabError(f"results database {self.path}: the spec of trial {key} is unreadable")
        return value

    def _status(self, text: Any, key: str) -> TrialStatus:
        try:
            return TrialStatus(text)
        except ValueError:
            raise LrlabError(
                f"results database {self.path}: trial {key} has status {text!r}"
            ) from None

    def metrics(self, key: str) -> tuple[list[int], dict[str, list[float]]]:
        """``(epochs, {name: values aligned with epochs})`` of a trial (NaN where a metric was
        not reported that epoch)."""
        rows = self._query(
            "SELECT epoch, name, value FROM metrics WHERE trial_key=? ORDER BY epoch, name",
            (key,),
        )
        epochs = sorted({int(self._number(r[0], f"an epoch of trial {key}")) for r in rows})
        index = {e: i for i, e in enumerate(epochs)}
        out: dict[str, list[float]] = {}
        for epoch, name, value in rows:
            series = out.setdefault(name, [math.nan] * len(epochs))
            series[index[int(epoch)]] = self._number(value, f"metric {name!r} of trial {key}")
        return epochs, out

    def final_metrics(self, key: str) -> dict[str, float]:
        rows = self._query("SELECT name, value FROM final_metrics WHERE trial_key=?", (key,))
        return {n: self._number(v, f"final metric {n!r} of trial {key}") for n, v in rows}

    def trial_status(self) -> dict[str, TrialStatus]:
        """Trial key -> status, for every recorded trial."""
        rows = self._query("SELECT key, status FROM trials")
        return {k: self._status(s, k) for k, s in rows}
