"""The SQLite results store of the lab: one row per trial, one per trial and epoch.

Only the driver process of a sweep writes. Each finished trial (its summary row and all its epoch
rows) is written in ONE transaction, so a process killed at any moment (SIGKILL included) leaves
either the whole trial or nothing of it; the database runs in WAL mode with ``synchronous=FULL``.

Tables (see ``docs/lab-compare.md``):

- ``studies``: one row per study name, with the study's resolved settings as JSON;
- ``study_trials``: which trial (by key) is cell ``(schedule, seed)`` of a study;
- ``trials``: one row per finished trial (``done``, ``diverged`` or ``failed``), keyed by the
  trial spec's stable hash, so the same spec is never trained twice;
- ``epochs``: one row per trial and epoch;
- ``attempts``: one row each time the driver hands a trial to an executor (an execution log).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lrlab.errors import LrlabError

SCHEMA_VERSION = 1

#: Per-epoch columns, in the order of the trainer's ``EpochRecord`` fields.
EPOCH_COLUMNS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "lr",
    "lr_min",
    "lr_max",
    "seconds",
)

#: Terminal statuses of a trial. ``done`` and ``diverged`` are finished (never re-run);
#: ``failed`` (the trial raised) is retried by the next sweep of a study that contains it.
FINISHED = ("done", "diverged")
STATUSES = ("done", "diverged", "failed")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS studies (
    name    TEXT PRIMARY KEY,
    config  TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS study_trials (
    study     TEXT NOT NULL REFERENCES studies(name) ON DELETE CASCADE,
    schedule  TEXT NOT NULL,
    seed      INTEGER NOT NULL,
    trial_key TEXT NOT NULL,
    PRIMARY KEY (study, schedule, seed)
);
CREATE TABLE IF NOT EXISTS trials (
    key               TEXT PRIMARY KEY,
    spec              TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    diverged          INTEGER NOT NULL,
    error             TEXT,
    epochs_run        INTEGER NOT NULL,
    best_epoch        INTEGER,
    best_val_loss     REAL,
    best_test_acc     REAL,
    final_test_acc    REAL,
    convergence_epoch INTEGER,
    wall_time         REAL,
    finished          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS epochs (
    trial_key TEXT NOT NULL REFERENCES trials(key) ON DELETE CASCADE,
    epoch     INTEGER NOT NULL,
    {", ".join(f"{c} REAL" for c in EPOCH_COLUMNS)},
    PRIMARY KEY (trial_key, epoch)
);
CREATE TABLE IF NOT EXISTS attempts (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    trial_key TEXT NOT NULL,
    started   REAL NOT NULL,
    pid       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_key ON attempts(trial_key);
"""


def _num(value: Any) -> float:
    """A REAL read back from SQLite: SQLite stores NaN as NULL, so NULL reads back as NaN."""
    return math.nan if value is None else float(value)


def _real(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


@dataclass
class StoredTrial:
    """One cell ``(schedule, seed)`` of a study, as read back from the store."""

    schedule: str
    seed: int
    key: str
    spec: dict
    status: str  # "done" | "diverged" | "failed"
    diverged: bool
    error: str | None
    epochs_run: int
    best_epoch: int | None
    best_val_loss: float
    best_test_acc: float
    final_test_acc: float
    convergence_epoch: int | None
    wall_time: float
    #: column name -> list of per-epoch values (``epoch`` included), empty for a failed trial
    epochs: dict[str, list[float]] = field(default_factory=dict)


class Store:
    """The results database. ``Store(path)`` creates it (and its folder) if needed.

    Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise LrlabError(f"cannot use {self.path} as a results database: {exc}") from None

    # ------------------------------------------------------------------ plumbing
    def _init_schema(self) -> None:
        with self._transaction() as cur:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    cur.execute(statement)
            row = cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                cur.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) != SCHEMA_VERSION:
                raise LrlabError(
                    f"results database {self.path} has schema version {row[0]}, this lrlab writes "
                    f"version {SCHEMA_VERSION}; use another --db"
                )

    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> sqlite3.Cursor:
            self.cur = self.db.cursor()
            self.cur.execute("BEGIN IMMEDIATE")
            return self.cur

        def __exit__(self, exc_type, exc, tb) -> None:
            self.cur.execute("ROLLBACK" if exc_type else "COMMIT")

    def _transaction(self) -> Store._Tx:
        return Store._Tx(self._db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ studies
    def save_study(self, name: str, config: Mapping, cells: Iterable[tuple[str, int, str]]) -> None:
        """Record a study's settings and its cells ``(schedule, seed, trial_key)``, replacing any
        previous membership of that study name (finished trials themselves are kept)."""
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
        row = self._db.execute("SELECT config FROM studies WHERE name=?", (name,)).fetchone()
        if row is None:
            raise LrlabError(f"no study named {name!r} in {self.path}")
        return json.loads(row[0])

    def study_names(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM studies ORDER BY name")]

    # ------------------------------------------------------------------ trials
    def finished_keys(self, keys: Iterable[str] | None = None) -> set[str]:
        """Keys of finished trials (``done`` or ``diverged``), among ``keys`` if given."""
        rows = self._db.execute(
            f"SELECT key FROM trials WHERE status IN ({', '.join('?' * len(FINISHED))})", FINISHED
        )
        done = {r[0] for r in rows}
        return done if keys is None else done & set(keys)

    def record_attempt(self, key: str, pid: int | None = None) -> None:
        """Log that a trial was handed to an executor (the execution log; its own transaction)."""
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO attempts(trial_key, started, pid) VALUES (?, ?, ?)",
                (key, time.time(), os.getpid() if pid is None else pid),
            )

    def attempts(self) -> dict[str, int]:
        """Trial key -> number of times the trial was handed to an executor."""
        rows = self._db.execute("SELECT trial_key, COUNT(*) FROM attempts GROUP BY trial_key")
        return {k: n for k, n in rows}

    def record_trial(
        self,
        key: str,
        spec: Mapping,
        *,
        status: str,
        epochs: Sequence[Mapping[str, float]] = (),
        diverged: bool = False,
        error: str | None = None,
        best_epoch: int | None = None,
        best_val_loss: float | None = None,
        best_test_acc: float | None = None,
        final_test_acc: float | None = None,
        convergence_epoch: int | None = None,
        wall_time: float | None = None,
    ) -> None:
        """Write a finished trial, its summary and every epoch row, in ONE transaction.

        Re-recording a key replaces the previous record (a failed trial that now succeeded).
        ``epochs`` holds one mapping per epoch with an ``epoch`` key and :data:`EPOCH_COLUMNS`.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        epoch_rows = [
            (key, int(e["epoch"]), *(_real(e.get(c)) for c in EPOCH_COLUMNS)) for e in epochs
        ]
        with self._transaction() as cur:
            cur.execute("DELETE FROM trials WHERE key=?", (key,))  # cascades to epochs
            cur.execute(
                "INSERT INTO trials(key, spec, status, diverged, error, epochs_run, best_epoch, "
                "best_val_loss, best_test_acc, final_test_acc, convergence_epoch, wall_time, "
                "finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    json.dumps(spec, sort_keys=True),
                    status,
                    int(bool(diverged)),
                    error,
                    len(epoch_rows),
                    None if best_epoch is None else int(best_epoch),
                    _real(best_val_loss),
                    _real(best_test_acc),
                    _real(final_test_acc),
                    None if convergence_epoch is None else int(convergence_epoch),
                    _real(wall_time),
                    time.time(),
                ),
            )
            cur.executemany(
                f"INSERT INTO epochs(trial_key, epoch, {', '.join(EPOCH_COLUMNS)}) "
                f"VALUES ({', '.join('?' * (2 + len(EPOCH_COLUMNS)))})",
                epoch_rows,
            )

    def study_trials(self, study: str, *, with_epochs: bool = True) -> list[StoredTrial]:
        """The recorded trials of a study's cells, ordered by schedule order then seed.

        Cells whose trial has not finished yet are left out. Schedules keep the order in which
        :meth:`save_study` listed them.
        """
        rows = self._db.execute(
            "SELECT st.schedule, st.seed, t.key, t.spec, t.status, t.diverged, t.error, "
            "t.epochs_run, t.best_epoch, t.best_val_loss, t.best_test_acc, t.final_test_acc, "
            "t.convergence_epoch, t.wall_time "
            "FROM study_trials st JOIN trials t ON t.key = st.trial_key "
            "WHERE st.study = ? ORDER BY st.rowid",
            (study,),
        ).fetchall()
        out = []
        for r in rows:
            trial = StoredTrial(
                schedule=r[0],
                seed=int(r[1]),
                key=r[2],
                spec=json.loads(r[3]),
                status=r[4],
                diverged=bool(r[5]),
                error=r[6],
                epochs_run=int(r[7]),
                best_epoch=r[8],
                best_val_loss=_num(r[9]),
                best_test_acc=_num(r[10]),
                final_test_acc=_num(r[11]),
                convergence_epoch=r[12],
                wall_time=_num(r[13]),
            )
            if with_epochs:
                trial.epochs = self.epochs(trial.key)
            out.append(trial)
        return out

    def epochs(self, key: str) -> dict[str, list[float]]:
        """Per-epoch columns of a trial: ``{"epoch": [...], "val_acc": [...], ...}``."""
        cols = ("epoch", *EPOCH_COLUMNS)
        rows = self._db.execute(
            f"SELECT {', '.join(cols)} FROM epochs WHERE trial_key=? ORDER BY epoch", (key,)
        ).fetchall()
        return {c: [(_num(r[i]) if i else int(r[i])) for r in rows] for i, c in enumerate(cols)}

    def trial_status(self) -> dict[str, str]:
        """Trial key -> status, for every recorded trial."""
        return {k: s for k, s in self._db.execute("SELECT key, status FROM trials")}
