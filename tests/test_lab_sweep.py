"""The sweep runner: resume, failures, divergence, worker processes, SIGKILL, determinism."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import done_keys

from lrlab.errors import ConfigError
from lrlab.lab.report import build_report, write_report
from lrlab.lab.store import Store
from lrlab.lab.study import load_study
from lrlab.lab.sweep import (
    EXECUTORS,
    Executor,
    InlineExecutor,
    LocalExecutor,
    Outcome,
    make_executor,
    run_sweep,
)
from lrlab.lab.trainer import EpochRecord, TrialResult

FAIL_LR = 0.0123  # the fake trial raises for this learning rate
DIVERGE_LR = 9.0  # ... and diverges for this one
DIE_LR = 0.0321  # ... and kills its worker process (once per marker file)


def fake_trial(spec, *, device=None, threads=1):
    """A deterministic stand-in for the trainer: numbers from the seed and the schedule's lr."""
    lr = spec.schedule["lr"]
    if lr == FAIL_LR:
        raise ValueError("fake failure\nsecond line that must not reach the store")
    if lr == DIE_LR:
        marker = Path(spec.data_dir) / "died"  # (not the environment: see LocalExecutor)
        if not marker.exists():
            marker.write_text("died once")
            os._exit(3)
    acc = [min(0.99, 0.3 + 0.1 * e + 0.01 * spec.seed + lr) for e in range(spec.epochs)]
    diverged = lr == DIVERGE_LR
    epochs = [
        EpochRecord(
            epoch=e + 1,
            train_loss=1.0 / (e + 1),
            train_acc=a,
            val_loss=1.0 / (e + 2),
            val_acc=a,
            test_loss=1.0 / (e + 2),
            test_acc=a - 0.01,
            lr=lr,
            lr_min=lr,
            lr_max=lr,
            seconds=0.01,
        )
        for e, a in enumerate(acc)
    ]
    if diverged:
        epochs = epochs[:1]
        epochs[0].train_loss = float("nan")
    return TrialResult(
        spec=spec,
        epochs=epochs,
        diverged=diverged,
        best_epoch=len(epochs),
        best_val_loss=epochs[-1].val_loss,
        best_test_acc=epochs[-1].test_acc,
        final_test_acc=epochs[-1].test_acc,
        wall_time=0.01,
    )


def fake_study(tmp_path, extra="", seeds=2, epochs=5, data_dir=None):
    text = f'data_dir = "{data_dir}"\n' if data_dir else ""
    text += textwrap.dedent(
        f"""
        task = "digits"
        model = "mlp"
        epochs = {epochs}
        batch_size = 64
        seeds = {seeds}
        [schedules.a]
        type = "constant"
        lr = 0.1
        [schedules.b]
        type = "constant"
        lr = 0.05
        """
    ) + textwrap.dedent(extra)
    path = tmp_path / "fake.toml"
    path.write_text(text)
    return load_study(path)


def test_inline_sweep_records_every_trial_and_a_rerun_skips_them(tmp_path):
    study = fake_study(tmp_path)
    with Store(tmp_path / "r.sqlite") as store:
        first = run_sweep(study, store, workers=0, trial_fn=fake_trial, progress=False)
        assert (first.total, first.ran, first.done, first.skipped) == (4, 4, 4, 0)
        trials = store.study_trials(study.name)
        assert {(t.schedule, t.seed) for t in trials} == {(s, k) for s in "ab" for k in (0, 1)}
        for t in trials:
            expected = fake_trial(next(c.spec for c in study.cells if c.key == t.key))
            assert t.status == "done" and t.final["test_acc"] == expected.final_test_acc
            assert t.metrics["val_acc"] == [e.val_acc for e in expected.epochs]
            assert t.epochs == [e.epoch for e in expected.epochs]
        again = run_sweep(study, store, workers=0, trial_fn=fake_trial, progress=False)
        assert (again.ran, again.skipped) == (0, 4)
        assert set(store.attempts().values()) == {1}
        # more seeds later: only the new cells run
        more = run_sweep(
            fake_study(tmp_path, seeds=3), store, workers=0, trial_fn=fake_trial, progress=False
        )
        assert (more.ran, more.skipped) == (2, 4)


def test_failing_and_diverging_trials_do_not_stop_the_sweep(tmp_path):
    extra = f"""
    [schedules.boom]
    type = "constant"
    lr = {FAIL_LR}
    [schedules.nan]
    type = "constant"
    lr = {DIVERGE_LR}
    """
    study = fake_study(tmp_path, extra)
    with Store(tmp_path / "r.sqlite") as store:
        summary = run_sweep(study, store, workers=0, trial_fn=fake_trial, progress=False)
        assert (summary.done, summary.diverged, summary.failed) == (4, 2, 2)
        by = {(t.schedule, t.seed): t for t in store.study_trials(study.name)}
        assert by[("boom", 0)].status == "failed"
        assert by[("boom", 0)].error == "ValueError: fake failure"  # one line
        assert by[("nan", 1)].status == "diverged" and math.isnan(
            by[("nan", 1)].metrics["train_loss"][0]
        )
        # a rerun retries the failed trials only (diverged ones are finished results)
        again = run_sweep(study, store, workers=0, trial_fn=fake_trial, progress=False)
        assert (again.ran, again.failed) == (2, 2)
        attempts = store.attempts()
        assert sorted(attempts[by[(n, s)].key] for n in ("boom", "nan") for s in (0, 1)) == [
            1,
            1,
            2,
            2,
        ]


def test_worker_processes_exceptions_and_a_dying_worker(tmp_path):
    extra = f"""
    [schedules.boom]
    type = "constant"
    lr = {FAIL_LR}
    [schedules.die]
    type = "constant"
    lr = {DIE_LR}
    """
    study = fake_study(tmp_path, extra, seeds=1, data_dir=tmp_path)
    with Store(tmp_path / "r.sqlite") as store:
        # one worker: only the dying trial is in flight when its process dies
        executor = LocalExecutor(1, trial_fn=fake_trial)
        try:
            summary = run_sweep(study, store, executor=executor, progress=False)
            by = {t.schedule: t for t in store.study_trials(study.name)}
            assert (summary.done, summary.failed) == (2, 2)
            assert by["boom"].error == "ValueError: fake failure"
            assert by["die"].error.startswith("WorkerDied: the worker process died (exit code 3)")
            assert by["a"].status == by["b"].status == "done"
            again = run_sweep(study, store, executor=executor, progress=False)  # pool restarted
        finally:
            executor.close()
        assert (again.ran, again.done, again.failed) == (2, 1, 1)
        assert store.study_trials(study.name)[3].status == "done"


class ListExecutor:
    """A minimal third-party executor: what a Ray backend would implement."""

    def __init__(self, **kwargs):
        self.kwargs, self.seen = kwargs, []

    def run(self, units, *, on_epoch=None, time_limit=None):
        for unit in units:
            for spec in unit:
                self.seen.append(spec.key())
                yield Outcome(spec, fake_trial(spec))

    def close(self):
        pass


def test_executor_protocol_and_registry(tmp_path, monkeypatch):
    assert isinstance(LocalExecutor(1), Executor) and isinstance(InlineExecutor(), Executor)
    assert isinstance(make_executor("local", workers=0), InlineExecutor)
    with pytest.raises(ConfigError, match="unknown executor 'lokal'.*did you mean 'local'"):
        make_executor("lokal")
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        LocalExecutor(0)
    monkeypatch.setitem(EXECUTORS, "list", ListExecutor)
    executor = make_executor("list", workers=3)
    assert executor.kwargs == {"workers": 3}
    study = fake_study(tmp_path)
    with Store(tmp_path / "r.sqlite") as store:
        summary = run_sweep(study, store, executor=executor, progress=False)
    assert summary.done == 4 and sorted(executor.seen) == sorted(c.key for c in study.cells)


# --------------------------------------------------------------------------------------------
# With the real trainer

TINY_REAL = """
description = "tiny real study"
task = "digits"
model = "mlp"
epochs = 2
batch_size = 64
seeds = 2
baseline = "multistep"
target_acc = 0.5

[schedules.multistep]
type = "multistep"
lr = 0.1
milestones = ["${0.5*total_steps}"]

[schedules.cosine]
type = "cosine"
lr = 0.1
total = "${total_steps}"

[schedules.seq2_cutoff]
type = "policy"
trigger = "cutoff"
values = { type = "sequence", kind = "seq2", lr = 0.05 }
"""


def rows(store, study):
    """Everything the store holds about a study's trials except timings."""
    out = {}
    for t in store.study_trials(study):
        metrics = {k: v for k, v in t.metrics.items() if k != "seconds"}
        out[(t.schedule, t.seed)] = (
            t.key,
            t.status,
            t.final["best_epoch"],
            t.final["best_val_loss"],
            t.final["best_test_acc"],
            t.final["test_acc"],
            t.epochs,
            metrics,
        )
    return out


def test_tiny_real_study_end_to_end_and_same_seed_same_numbers(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_REAL)
    study = load_study(path)
    with Store(tmp_path / "pool.sqlite") as pool:
        summary = run_sweep(study, pool, workers=2, progress=False)
        assert (summary.done, summary.failed) == (6, 0)
        report = build_report(pool, study.name)
        paths = write_report(report, tmp_path / "out")
        reference = rows(pool, study.name)
    assert all(p.stat().st_size > 0 for p in paths.values())
    text = paths["report"].read_text()
    assert all(f"| {name} |" in text for name in study.schedules)
    assert [s.n for s in report.stats] == [2, 2, 2]
    for _key, (_, status, best_epoch, _, _best, final, epochs, metrics) in reference.items():
        assert status == "done" and 1 <= best_epoch <= 2 and 0 < final <= 1
        assert epochs == [1, 2] and all(0 < a <= 1 for a in metrics["val_acc"])
    # the same specs trained again, in this process instead of workers: identical numbers
    with Store(tmp_path / "inline.sqlite") as inline:
        run_sweep(load_study(path), inline, workers=0, progress=False)
        assert rows(inline, study.name) == reference


SLOW_TRIAL = """
import os, time
from lrlab.lab.sweep import execute_trial

def slow_trial(spec, *, device=None, threads=1):
    with open(os.environ["LRLAB_EXEC_LOG"], "a") as f:
        f.write(f"{spec.key()} {os.getpid()}\\n")
    result, error = execute_trial(None, spec, device, threads)  # the real trainer
    if error:
        raise RuntimeError(error)
    time.sleep(float(os.environ["LRLAB_TRIAL_SLEEP"]))
    return result
"""

RUNNER = """
import sys
from slow_trial import slow_trial
from lrlab.lab.store import Store
from lrlab.lab.study import load_study
from lrlab.lab.sweep import run_sweep

if __name__ == "__main__":
    with Store(sys.argv[2]) as store:
        run_sweep(load_study(sys.argv[1]), store, workers=2, trial_fn=slow_trial, progress=False)
"""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not reaped yet) is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigkill_mid_sweep_then_resume_equals_an_uninterrupted_run(tmp_path):
    study_path = tmp_path / "tiny.toml"
    study_path.write_text(TINY_REAL.replace("seeds = 2", "seeds = 3"))
    (tmp_path / "slow_trial.py").write_text(SLOW_TRIAL)
    (tmp_path / "runner.py").write_text(RUNNER)
    db, log = tmp_path / "killed.sqlite", tmp_path / "executions.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
        "LRLAB_EXEC_LOG": str(log),
        "LRLAB_TRIAL_SLEEP": "0.3",
    }
    cmd = [sys.executable, str(tmp_path / "runner.py"), str(study_path), str(db)]

    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(done_keys(db)) < 3:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers must exit by themselves
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = done_keys(db)
    assert 3 <= len(before) < 9
    workers = {int(line.split()[1]) for line in log.read_text().splitlines()}
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers), "orphaned workers kept running"

    env["LRLAB_TRIAL_SLEEP"] = "0"
    subprocess.run(cmd, env=env, cwd=tmp_path, check=True, timeout=120)

    study = load_study(study_path)
    with Store(db) as store:
        resumed = rows(store, study.name)
        attempts = store.attempts()
    with Store(tmp_path / "uninterrupted.sqlite") as store:
        # one by one, as the slow trial function (a custom trainer) ran them
        run_sweep(study, store, workers=0, progress=False, batch_trials=1)
        uninterrupted = rows(store, study.name)
    assert len(resumed) == 9 and resumed == uninterrupted

    executions = [line.split()[0] for line in log.read_text().splitlines()]
    assert set(executions) == {c.key for c in study.cells}
    for key in before:  # committed before the kill: never run again
        assert executions.count(key) == 1 and attempts[key] == 1
    assert max(executions.count(k) for k in executions) <= 2  # at most the ones in flight re-ran


def test_a_subset_of_cells_trains_only_those(tmp_path):
    from lrlab.lab.sweep import cell_trainer

    study = fake_study(tmp_path, seeds=4)
    with Store(tmp_path / "r.sqlite") as store:
        train_cells = cell_trainer(study, store, workers=0, trial_fn=fake_trial, progress=False)
        first = train_cells([("a", 0), ("b", 0)])
        assert (first.total, first.ran) == (2, 2)
        assert {(t.schedule, t.seed) for t in store.study_trials(study.name)} == {
            ("a", 0),
            ("b", 0),
        }
        more = train_cells([("a", 0), ("a", 1), ("a", 2)])
        assert (more.skipped, more.ran) == (1, 2)
        with pytest.raises(ConfigError, match="cells: 'c' is not a schedule"):
            train_cells([("c", 0)])
        beyond = train_cells([("b", 9)])  # a seed the study does not list: added to it
        assert beyond.ran == 1
        cells = {(t.schedule, t.seed) for t in store.study_trials(study.name)}
        assert ("b", 9) in cells and len(cells) == 5
        assert store.study_config(study.name)["seeds"] == [0, 1, 2, 3, 9]


def not_a_result(spec, *, device=None, threads=1):
    return {"acc": 0.5}


def test_a_trial_that_returns_something_else_than_a_result_fails_only_itself(tmp_path):
    study = fake_study(tmp_path, seeds=1)
    with Store(tmp_path / "r.sqlite") as store:
        summary = run_sweep(study, store, workers=0, trial_fn=not_a_result, progress=False)
        errors = {t.error for t in store.study_trials(study.name)}
    assert summary.failed == 2 and errors == {
        "TypeError: the trial returned a dict, not a TrialResult or MetricsResult"
    }


def test_batched_units_go_to_the_batched_trainer_and_are_recorded_one_by_one(tmp_path, monkeypatch):
    """Units of up to K specs with the same batch_key go to train_trials as one call, split
    into balanced batches (plan_batches); each trial is claimed and recorded on its own."""
    from lrlab.lab import batched

    calls = []

    def train_trials(specs, *, device=None, threads=1, on_epoch=None):
        calls.append([s.key() for s in specs])
        return [fake_trial(s) for s in specs]

    monkeypatch.setattr(batched, "train_trials", train_trials)
    monkeypatch.setattr(batched, "batch_key", lambda spec: spec.schedule["lr"] > 0.07)
    study = fake_study(tmp_path, seeds=4)
    with Store(tmp_path / "r.sqlite") as store:
        summary = run_sweep(study, store, workers=0, batch_trials=3, progress=False)
        assert (summary.done, summary.failed) == (8, 0)
        assert set(store.attempts().values()) == {1}
        trials = store.study_trials(study.name)
    # 4 per group in units of at most 3, balanced: two units of 2 per group
    assert sorted(map(len, calls)) == [2, 2, 2, 2]
    for keys in calls:
        assert len({next(c.schedule for c in study.cells if c.key == k) for k in keys}) == 1
    batched_keys = {k for keys in calls for k in keys}
    assert {t.final["test_acc"] for t in trials if t.key in batched_keys} == {
        fake_trial(c.spec).final_test_acc for c in study.cells if c.key in batched_keys
    }


def test_a_trial_function_workers_cannot_receive_is_one_line(tmp_path):
    study = fake_study(tmp_path, seeds=1)
    executor = LocalExecutor(1, trial_fn=lambda spec, **kw: fake_trial(spec))
    try:
        with Store(tmp_path / "r.sqlite") as store:
            with pytest.raises(ConfigError) as info:
                run_sweep(study, store, executor=executor, progress=False)
            assert "trial_fn cannot be sent to worker processes" in str(info.value)
            assert store.trial_status() == {}  # nothing recorded, and no claim left behind
            assert store._query("SELECT COUNT(*) FROM claims") == [(0,)]
    finally:
        executor.close()
