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
from lrlab.lab.store import EPOCH_COLUMNS, Store


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
            best_epoch=2,
            best_val_loss=0.5,
            best_test_acc=0.9,
            final_test_acc=0.8,
            convergence_epoch=3,
            wall_time=1.5,
        )
        store.record_trial("k1", {"seed": 0}, status="failed", error="ValueError: boom")
        trials = store.study_trials("s")
        assert [(t.schedule, t.seed, t.status) for t in trials] == [
            ("a", 0, "done"),
            ("b", 0, "failed"),
        ]
        t = trials[0]
        assert t.epochs["epoch"] == [1, 2, 3]
        assert t.epochs["val_acc"] == [r["val_acc"] for r in epoch_rows(3)]
        assert (t.best_epoch, t.final_test_acc, t.convergence_epoch, t.epochs_run) == (2, 0.8, 3, 3)
        assert trials[1].error == "ValueError: boom" and trials[1].epochs["epoch"] == []
        assert store.finished_keys() == {"k0"}  # failed trials are retried
        assert store.study_config("s")["schedules"] == {"a": {}, "b": {}}
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_nan_reads_back_as_nan_and_rerecording_replaces(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.save_study("s", {"schedules": {"a": {}}}, [("a", 0, "k")])
        rows = epoch_rows(2)
        rows[1]["train_loss"] = math.nan
        store.record_trial(
            "k",
            {},
            status="diverged",
            epochs=rows,
            diverged=True,
            best_test_acc=math.nan,
            final_test_acc=0.1,
        )
        t = store.study_trials("s")[0]
        assert t.diverged and math.isnan(t.best_test_acc) and math.isnan(t.epochs["train_loss"][1])
        store.record_trial("k", {}, status="done", epochs=epoch_rows(4), final_test_acc=0.7)
        t = store.study_trials("s")[0]
        assert t.status == "done" and t.epochs_run == 4 and len(t.epochs["epoch"]) == 4


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
        store.record_trial(f"k{i}", {"i": i}, status="done", epochs=rows, final_test_acc=0.5)
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
            "SELECT t.key, COUNT(e.epoch) FROM trials t LEFT JOIN epochs e "
            "ON e.trial_key = t.key GROUP BY t.key"
        ).fetchall()
    )
    orphans = con.execute(
        "SELECT COUNT(*) FROM epochs WHERE trial_key NOT IN (SELECT key FROM trials)"
    ).fetchone()[0]
    con.close()
    assert len(counts) >= 3
    assert set(counts.values()) == {200}
    assert orphans == 0
    with Store(db) as store:  # and the store opens fine afterwards
        assert len(store.finished_keys()) == len(counts)
