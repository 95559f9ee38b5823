"""Two `lrlab compare` runs on one folder share the work (claims in the store); a SIGKILLed
run's claims are taken over (its process is gone; on another machine the lease expires) and the
other run completes; a hanging trial is ended by the time limit; progress ticks come from inside
running trials."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrlab.lab.contract import TrialStatus
from lrlab.lab.store import Store
from lrlab.lab.study import load_study
from lrlab.lab.sweep import InlineExecutor, LocalExecutor, _Progress, run_sweep

SLOW_TRIAL = """
import os, time

def train(trial):
    with open(trial.settings["log"], "a") as f:  # (not the environment: see LocalExecutor)
        f.write(f"{trial.schedule_name}-{trial.seed} {os.getpid()}\\n")
    if trial.settings.get("hang") == trial.schedule_name:
        time.sleep(600)
    for epoch in range(1, trial.settings["epochs"] + 1):
        time.sleep(trial.settings["sleep"])
        trial.report(epoch, val_loss=float(trial.schedule(0)) + 0.01 * trial.seed / epoch)
"""

STUDY = """
trial = "slowtrial:train"
objective = "val_loss"
mode = "min"
seeds = {seeds}
[settings]
epochs = 2
sleep = {sleep}
log = "{log}"
{extra}
[schedules.a]
type = "constant"
lr = 0.1
[schedules.b]
type = "constant"
lr = 0.2
"""


def make_study(tmp_path, seeds=4, sleep=0.2, extra=""):
    (tmp_path / "slowtrial.py").write_text(SLOW_TRIAL)
    path = tmp_path / "study.toml"
    log = tmp_path / "exec.log"
    path.write_text(STUDY.format(seeds=seeds, sleep=sleep, extra=extra, log=log))
    return path


def start(path, out, lease="3"):
    env = {
        **os.environ,
        "LRLAB_LEASE_SECONDS": lease,
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    cmd = [sys.executable, "-m", "lrlab", "compare", str(path), "--out", str(out)]
    cmd += ["--workers", "1", "--no-progress"]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def executions(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def done_count(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute("SELECT COUNT(*) FROM trials WHERE status='done'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        con.close()


def test_two_runs_on_one_folder_train_every_trial_exactly_once(tmp_path):
    path = make_study(tmp_path)
    out, log = tmp_path / "out", tmp_path / "exec.log"
    procs = [start(path, out) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    runs = executions(log)
    assert sorted(runs) == sorted(f"{s}-{k}" for s in "ab" for k in range(4))  # once each
    with Store(out / "results.sqlite") as store:
        trials = store.study_trials("study")
        assert len(trials) == 8 and {t.status for t in trials} == {TrialStatus.DONE}
        assert set(store.attempts().values()) == {1}
    pids = {line.split()[1] for line in log.read_text().splitlines()}
    assert len(pids) == 2  # both runs' workers trained: the work was shared


def test_a_sigkilled_run_leaves_claims_that_expire_and_the_other_run_completes(tmp_path):
    path = make_study(tmp_path, sleep=0.4)
    out, log = tmp_path / "out", tmp_path / "exec.log"
    victim = start(path, out)
    survivor = start(path, out)
    try:
        deadline = time.monotonic() + 120
        while done_count(out / "results.sqlite") < 2:
            assert victim.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        _, err = survivor.communicate(timeout=300)
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert survivor.returncode == 0, err
    with Store(out / "results.sqlite") as store:
        trials = store.study_trials("study")
        assert len(trials) == 8 and {t.status for t in trials} == {TrialStatus.DONE}
        attempts = store.attempts()
    runs = executions(log)
    assert set(runs) == {f"{s}-{k}" for s in "ab" for k in range(4)}
    assert max(runs.count(r) for r in runs) <= 2  # only the victim's trial in flight re-ran
    assert sum(attempts.values()) == len(runs)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_hanging_trial_is_ended_by_the_time_limit(tmp_path, workers):
    path = make_study(tmp_path, seeds=1, sleep=0.01, extra='hang = "b"')
    study = load_study(path)
    executor = InlineExecutor() if workers == 0 else LocalExecutor(workers)
    with Store(tmp_path / "r.sqlite") as store:
        started = time.monotonic()
        try:
            summary = run_sweep(study, store, executor=executor, progress=False, time_limit=2)
        finally:
            executor.close()
        assert time.monotonic() - started < 120  # not the 600 s the trial sleeps
        by = {t.schedule: t for t in store.study_trials("study")}
    assert (summary.done, summary.failed) == (1, 1)
    assert by["b"].error == "TimeLimitExceeded: ran past its time limit of 2 s"
    assert by["a"].status == TrialStatus.DONE


def test_epoch_ticks_arrive_from_worker_processes(tmp_path):
    path = make_study(tmp_path, seeds=1, sleep=0.01)
    study = load_study(path)
    ticks, events = [], []
    executor = LocalExecutor(1)
    try:
        units = [[c.spec] for c in study.cells]
        for outcome in executor.run(units, on_epoch=lambda k, e: ticks.append((k, e))):
            events.append(("outcome", outcome.spec.key(), len(ticks)))
    finally:
        executor.close()
    keys = [c.key for c in study.cells]
    assert ticks == [(keys[0], 1), (keys[0], 2), (keys[1], 1), (keys[1], 2)]
    assert events == [("outcome", keys[0], 2), ("outcome", keys[1], 4)]  # ticks come first


def test_the_progress_bar_moves_inside_trials_and_counts_only_this_runs_work():
    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    bar = _Progress(console, "s (3 done before)", total=2, epochs=4)
    try:
        task = bar.bar.tasks[0]
        assert task.total == 2  # the trials left, not the study's: the rate is this run's
        bar.epoch("k1", 1)
        bar.epoch("k1", 2)
        assert task.completed == pytest.approx(0.5)
        bar.epoch("k1", 2)  # a repeated tick does not count twice
        bar.advance("k1", "k1: done")
        assert task.completed == pytest.approx(1.0)
        bar.advance("k2", "k2: failed")
        assert task.completed == pytest.approx(2.0)
    finally:
        bar.stop()
