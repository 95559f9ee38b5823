"""The SQLite results store: schema, round trips, resume bookkeeping, atomicity under SIGKILL."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from lrlab.errors import LrlabError
from lrlab.lab.contract import Objective, TrialStatus
from lrlab.lab.store import EPOCH_COLUMNS, SCHEMA_VERSION, Store


def epoch_rows(n, scale=1.0):
    return [
        {"epoch": e, **{c: scale * (e + i / 10) for i, c in enumerate(EPOCH_COLUMNS)}}
        for e in range(1, n + 1)
    ]


def test_round_trip_of_a_study(tmp_path):
    with Store(tmp_path / "sub" / "r.sqlite") as store:
        store.save_study(
            "s",
            {"name": "s", "schedules": {"a": {}, "b": {}}},
            [("a", 0, "k0"), ("b", 0, "k1"), ("a", 1, "k2")],
        )
        store.record_trial(
            "k0",
            {"seed": 0},
            status="done",
            epochs=epoch_rows(3),
            final={"best_epoch": 2, "best_test_acc": 0.9, "test_acc": 0.8},
            wall_time=1.5,
        )
        store.record_trial("k1", {"seed": 0}, status="failed", error="ValueError: boom")
        trials = store.study_trials("s")
        assert [(t.schedule, t.seed, t.status) for t in trials] == [
            ("a", 0, TrialStatus.DONE),
            ("b", 0, TrialStatus.FAILED),
        ]
        t = trials[0]
        assert t.epochs == [1, 2, 3] and set(t.metrics) == set(EPOCH_COLUMNS)
        assert t.metrics["val_acc"] == [r["val_acc"] for r in epoch_rows(3)]
        assert t.final == {"best_epoch": 2.0, "best_test_acc": 0.9, "test_acc": 0.8}
        assert t.wall_time == 1.5 and t.spec == {"seed": 0}
        assert trials[1].error == "ValueError: boom" and trials[1].epochs == []
        assert store.finished_keys() == {"k0"}  # failed trials are retried
        assert store.study_config("s")["schedules"] == {"a": {}, "b": {}}
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_any_metric_names_and_missing_values_read_back_as_nan(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.save_study("s", {}, [("a", 0, "k")])
        rows = [{"epoch": 1, "loss": 2.0}, {"epoch": 3, "loss": math.nan, "bleu": 0.25}]
        store.record_trial("k", {}, status="diverged", epochs=rows, final={"x": math.inf})
        t = store.study_trials("s")[0]
        assert t.epochs == [1, 3] and t.metrics["loss"][0] == 2.0
        assert math.isnan(t.metrics["loss"][1]) and math.isnan(t.metrics["bleu"][0])
        assert t.metrics["bleu"][1] == 0.25 and t.final == {"x": math.inf}
        assert t.value(Objective("loss", "min")) == 2.0  # the last finite value
        assert math.isnan(t.value(Objective("nope", "max")))


def test_a_worse_outcome_never_replaces_a_better_one(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.save_study("s", {}, [("a", 0, "k")])
        assert store.record_trial("k", {}, status="failed", error="E: 1") == TrialStatus.FAILED
        assert store.record_trial("k", {}, status="diverged", epochs=epoch_rows(1)) == "diverged"
        assert store.record_trial("k", {}, status="failed", error="E: 2") == "diverged"
        done = store.record_trial("k", {}, status="done", epochs=epoch_rows(4), final={"a": 1})
        assert done == TrialStatus.DONE
        for status in ("failed", "diverged"):
            assert store.record_trial("k", {}, status=status, error="late") == TrialStatus.DONE
        t = store.study_trials("s")[0]
        assert t.status == "done" and t.epochs == [1, 2, 3, 4] and t.final == {"a": 1.0}
        assert t.error is None
        store.record_trial("k", {}, status="done", epochs=epoch_rows(2))  # done replaces done
        assert store.study_trials("s")[0].epochs == [1, 2]


def test_claims_share_work_expire_and_are_released(tmp_path):
    with Store(tmp_path / "r.sqlite") as a, Store(tmp_path / "r.sqlite") as b:
        assert a.claim("k", "A", lease=60)
        assert not b.claim("k", "B", lease=60)  # A holds it
        assert a.claim("k", "A", lease=60)  # its own claim: renewed
        assert b.claimed_by_others(["k", "j"], "B") == {"k"}
        assert a.claim("j", "A", lease=0.05)
        time.sleep(0.1)
        assert b.claim("j", "B", lease=60)  # A's claim on j expired (a killed run)
        assert a.heartbeat("A", lease=60) == 1  # only k is still A's
        a.record_trial("k", {}, status="done")
        assert not b.claim("k", "B")  # finished: nobody claims it
        assert b.claimed_by_others(["k"], "B") == set()  # recording released it
        b.release("B")
        assert a.claim("j", "A")
        assert a.attempts() == {"k": 1, "j": 3} and b.attempts() == a.attempts()


def test_study_membership_is_replaced_and_attempts_counted(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.save_study("s", {}, [("a", 0, "k0"), ("a", 1, "k1")])
        store.save_study("s", {}, [("a", 0, "k0")])
        store.record_trial("k1", {}, status="done")
        store.record_trial("k0", {}, status="done")
        assert [t.key for t in store.study_trials("s")] == ["k0"]
        store.record_attempt("k0")
        store.record_attempt("k0")
        store.record_attempt("k1")
        assert store.attempts() == {"k0": 2, "k1": 1}
        assert store.study_names() == ["s"]


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE studies (name TEXT PRIMARY KEY, config TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE study_trials (study TEXT NOT NULL REFERENCES studies(name) ON DELETE CASCADE,
    schedule TEXT NOT NULL, seed INTEGER NOT NULL, trial_key TEXT NOT NULL,
    PRIMARY KEY (study, schedule, seed));
CREATE TABLE trials (key TEXT PRIMARY KEY, spec TEXT NOT NULL, status TEXT NOT NULL,
    diverged INTEGER NOT NULL, error TEXT, epochs_run INTEGER NOT NULL, best_epoch INTEGER,
    best_val_loss REAL, best_test_acc REAL, final_test_acc REAL, convergence_epoch INTEGER,
    wall_time REAL, finished REAL NOT NULL);
CREATE TABLE epochs (trial_key TEXT NOT NULL REFERENCES trials(key) ON DELETE CASCADE,
    epoch INTEGER NOT NULL, train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL,
    test_loss REAL, test_acc REAL, lr REAL, lr_min REAL, lr_max REAL, seconds REAL,
    PRIMARY KEY (trial_key, epoch));
CREATE TABLE attempts (id INTEGER PRIMARY KEY AUTOINCREMENT, trial_key TEXT NOT NULL,
    started REAL NOT NULL, pid INTEGER NOT NULL);
CREATE INDEX attempts_key ON attempts(trial_key);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO studies VALUES ('s', '{"schedules": {"a": {}}}', 0);
INSERT INTO study_trials VALUES ('s', 'a', 0, 'k0'), ('s', 'a', 1, 'k1');
INSERT INTO trials VALUES ('k0', '{"seed": 0}', 'done', 0, NULL, 2, 2, 0.3, 0.91, 0.9, 1, 5.0, 0),
    ('k1', '{"seed": 1}', 'failed', 0, 'E: x', 0, NULL, NULL, NULL, NULL, NULL, NULL, 0);
INSERT INTO epochs VALUES ('k0', 1, 1.0, 0.5, 0.4, 0.8, 0.45, 0.85, 0.1, 0.1, 0.1, 1.0),
    ('k0', 2, 0.5, 0.9, 0.3, 0.9, 0.35, 0.9, 0.01, 0.01, 0.01, 1.0);
INSERT INTO attempts VALUES (1, 'k0', 0, 1), (2, 'k1', 0, 1);
"""


def test_a_version_1_store_is_migrated_in_place(tmp_path):
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.executescript(V1_SCHEMA)
    con.close()
    with Store(db) as store:
        done, failed = store.study_trials("s")
        assert done.status == "done" and done.epochs == [1, 2]
        assert done.metrics["val_acc"] == [0.8, 0.9] and done.metrics["lr"] == [0.1, 0.01]
        assert done.final == {
            "test_acc": 0.9,
            "best_test_acc": 0.91,
            "best_epoch": 2.0,
            "best_val_loss": 0.3,
        }
        assert failed.status == "failed" and failed.error == "E: x" and failed.final == {}
        assert store.attempts() == {"k0": 1, "k1": 1} and store.finished_keys() == {"k0"}
    with Store(db) as store:  # and it opens as version 2 from then on
        assert store._version() == SCHEMA_VERSION == 2


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("UPDATE meta SET value='7'", "has schema version 7, this lrlab reads versions 1 and 2"),
        ("ALTER TABLE trials ADD COLUMN extra TEXT", "table trials has columns"),
        ("UPDATE metrics SET value='abc'", "metric 'val_acc' of trial k holds 'abc', not a number"),
    ],
)
def test_a_database_of_another_shape_or_content_is_one_line(tmp_path, sql, message):
    db = tmp_path / "r.sqlite"
    with Store(db) as store:
        store.save_study("s", {}, [("a", 0, "k")])
        store.record_trial("k", {}, status="done", epochs=[{"epoch": 1, "val_acc": 0.5}])
    con = sqlite3.connect(db)
    con.execute(sql)
    con.commit()
    con.close()
    with pytest.raises(LrlabError) as info, Store(db) as store:
        store.study_trials("s")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unusable_paths_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "folder.sqlite").mkdir()
    with pytest.raises(LrlabError, match="is a folder"):
        Store(tmp_path / "folder.sqlite")

    def read_only(*args, **kwargs):  # what SQLite says in a read-only folder
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", read_only)
    with pytest.raises(LrlabError, match="cannot open results database .*unable to open"):
        Store(tmp_path / "r.sqlite")


def test_a_full_disk_is_one_line(tmp_path, monkeypatch):
    with Store(tmp_path / "r.sqlite") as store:
        real = store._db

        class Full:
            def __getattr__(self, name):
                return getattr(real, name)

            def cursor(self):
                cur = real.cursor()

                class C:
                    def __getattr__(self, name):
                        return getattr(cur, name)

                    def execute(self, sql, *args):
                        if sql.startswith("INSERT"):
                            raise sqlite3.OperationalError("database or disk is full")
                        return cur.execute(sql, *args)

                return C()

        store._db = Full()
        with pytest.raises(LrlabError, match="database or disk is full"):
            store.record_trial("k", {}, status="done")
        store._db = real
        assert store.trial_status() == {}  # rolled back


def test_a_file_that_is_not_a_database_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"this is not sqlite, not at all" * 100)
    with pytest.raises(LrlabError, match="cannot use .* as a results database"):
        Store(path)
    with Store(tmp_path / "ok.sqlite") as store, pytest.raises(LrlabError, match="no study named"):
        store.study_config("nope")


WRITER = textwrap.dedent(
    """
    import sys
    from lrlab.lab.store import Store, EPOCH_COLUMNS
    store = Store(sys.argv[1])
    for i in range(100000):
        rows = [{"epoch": e, **{c: float(i + e) for c in EPOCH_COLUMNS}} for e in range(1, 201)]
        store.record_trial(f"k{i}", {"i": i}, status="done", epochs=rows, final={"test_acc": 0.5})
        if i == 2:
            print("ready", flush=True)
    """
)


def test_sigkill_leaves_whole_trials_or_nothing(tmp_path):
    """Kill a writer at arbitrary moments: every trial row present has all its epoch rows."""
    db = tmp_path / "r.sqlite"
    for delay in (0.0, 0.13, 0.29):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    con = sqlite3.connect(db)
    counts = dict(
        con.execute(
            "SELECT t.key, COUNT(DISTINCT m.epoch) FROM trials t LEFT JOIN metrics m "
            "ON m.trial_key = t.key GROUP BY t.key"
        ).fetchall()
    )
    orphans = con.execute(
        "SELECT COUNT(*) FROM metrics WHERE trial_key NOT IN (SELECT key FROM trials)"
    ).fetchone()[0]
    con.close()
    assert len(counts) >= 3
    assert set(counts.values()) == {200}
    assert orphans == 0
    with Store(db) as store:  # and the store opens fine afterwards
        assert len(store.finished_keys()) == len(counts)


def test_claims_of_a_dead_process_on_this_machine_are_taken_over_at_once(tmp_path):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    owner = f"{socket.gethostname()}:{dead.pid}:abc"
    remote = f"some-other-host:{dead.pid}:abc"  # another machine: only the lease decides
    with Store(tmp_path / "r.sqlite") as store:
        assert store.claim("k", owner, lease=600) and store.claim("j", remote, lease=600)
        assert store.claimed_by_others(["k", "j"], "me") == {"j"}
        assert store.claim("k", "me", lease=600)  # no 600 s wait for a SIGKILLed run
        assert not store.claim("j", "me", lease=600)
        alive = f"{socket.gethostname()}:{os.getpid()}:xyz"
        assert store.claim("m", alive, lease=600) and not store.claim("m", "me", lease=600)
