"""The four examples under ``examples/`` run end to end, with a tiny budget.

Each example folder is copied to a temporary folder first, so that nothing is written into the
repository and the user code is imported from the study file's folder, as it would be for a user.
The budgets are shrunk from the command line (``--seeds 2``, ``--set epochs=2`` for a trial
study's ``[settings]``, ``--epochs 2`` for lrlab's trainer), never by editing the examples.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import done_keys

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from lrlab.lab.contract import Objective
from lrlab.lab.store import Store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SRC = Path(__file__).resolve().parents[1] / "src"
#: example -> (study name, objective, mode, options that shrink it, module:function of its trial)
SPECS = {
    "own-model": ("study", "test_acc", "max", ["--epochs", "2"], None),
    "own-loop": ("study", "val_loss", "min", ["--set", "epochs=3"], "diabetes_loop:train"),
    "lightning": ("study", "val_acc", "max", ["--set", "epochs=2"], "digits_lightning:train"),
    "hf-trainer": ("study", "eval_loss", "min", ["--set", "epochs=2"], "iris_hf:train"),
}
NEEDS = {"lightning": "lightning", "hf-trainer": "transformers"}
SEEDS = 2
SCHEDULES = 3  # every example compares three schedules


def _needs(name: str) -> None:
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    if name == "hf-trainer":
        pytest.importorskip("accelerate")


def copy_example(name: str, where: Path) -> Path:
    """The example's folder copied under ``where``; returns its study file."""
    folder = where / name
    shutil.copytree(
        EXAMPLES / name, folder, ignore=shutil.ignore_patterns("__pycache__", "lrlab-out")
    )
    return folder / "study.toml"


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        env.setdefault(flag, "1")
    return env


def lrlab(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    """``python -m lrlab ARGS`` in a fresh process; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "lrlab", *args],
        cwd=cwd,
        env=env or environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def compare_args(study: Path, out: Path, name: str, *more: str) -> list[str]:
    shrink = SPECS[name][3]
    return ["compare", str(study), "--out", str(out), "--seeds", str(SEEDS), *shrink, *more]


def stored(db: Path, study: str = "study") -> dict:
    """Everything the store holds about a study's trials except timings, by (schedule, seed)."""
    with Store(db) as store:
        return {
            (t.schedule, t.seed): (
                t.key,
                str(t.status),
                t.error,
                t.epochs,
                {k: v for k, v in t.metrics.items() if k not in ("seconds",)},
                t.final,
            )
            for t in store.study_trials(study)
        }


# --------------------------------------------------------------------------------------------
# From the command line


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """``lrlab ARGV`` in this process (cheaper than a new one): exit status and stderr."""
    from lrlab.cli import main

    status = main(argv)
    return status, flat(capsys.readouterr().err)


def flat(text: str) -> str:
    """``text`` with every run of whitespace one space (the console wraps long lines)."""
    return " ".join(text.split())


@pytest.mark.parametrize("name", list(SPECS))
def test_example_from_the_cli_inline_then_a_rerun_trains_nothing(name, tmp_path, capsys):
    _needs(name)
    study = copy_example(name, tmp_path)
    out = tmp_path / "out"
    first = lrlab(*compare_args(study, out, name, "--workers", "0", "--no-progress"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    trials = SCHEDULES * SEEDS
    assert f"{trials} trials run ({trials} done, 0 diverged, 0 failed)" in flat(first.stderr)
    assert (out / "report.md").is_file()
    assert "verdict" in first.stdout  # the terminal table
    objective = Objective(SPECS[name][1], SPECS[name][2])
    rows = stored(out / "results.sqlite")
    assert len(rows) == trials and all(r[1] == "done" for r in rows.values())
    with Store(out / "results.sqlite") as store:
        values = [t.value(objective) for t in store.study_trials("study")]
    assert all(math.isfinite(v) for v in values), values
    # the rerun (in this process): every trial is already in the database
    status, err = run_main(
        compare_args(study, out, name, "--workers", "0", "--no-progress"), capsys
    )
    assert status == 0, err
    assert f"0 trials run (0 done, 0 diverged, 0 failed), {trials} already in" in err
    assert stored(out / "results.sqlite") == rows


# --------------------------------------------------------------------------------------------
# From Python


@pytest.mark.parametrize("name", list(SPECS))
def test_example_from_the_python_api(name, tmp_path):
    """``lrlab.lab.compare(None, study_file, ...)``: the study file says what trains."""
    _needs(name)
    from lrlab.lab import compare

    study = copy_example(name, tmp_path)
    settings = None if SPECS[name][4] is None else {"epochs": 2}
    result = compare(None, study, seeds=1, settings=settings, out=tmp_path / "out", workers=0)
    assert (result.summary.done, result.summary.failed) == (SCHEDULES, 0)
    assert result.paths["report"].is_file()
    assert set(result.verdicts) == {"constant", "cosine", "clr"}
    assert result.verdicts["constant"] == "baseline"
    objective = Objective(SPECS[name][1], SPECS[name][2])
    with Store(result.db) as store:
        assert all(math.isfinite(t.value(objective)) for t in store.study_trials("study"))
    again = compare(None, study, seeds=1, settings=settings, out=tmp_path / "out", workers=0)
    assert (again.summary.ran, again.summary.skipped) == (0, SCHEDULES)


def _own_loop_train(tmp_path):
    copy_example("own-loop", tmp_path)
    sys.path.insert(0, str(tmp_path / "own-loop"))
    import diabetes_loop

    return diabetes_loop.train


LOOP_SETTINGS = {"epochs": 3, "batch_size": 32, "steps_per_epoch": 9, "hidden": 32}
#: a rate 100x too small barely trains in 3 epochs: a clearly *higher* validation loss
SLOW_VS_BASE = {
    "constant": {"type": "constant", "lr": 0.01},
    "tiny": {"type": "constant", "lr": 0.0001},
}


@pytest.mark.parametrize(("mode", "verdict"), [("min", "worse"), ("max", "better")])
def test_the_objective_direction_decides_the_verdict(tmp_path, monkeypatch, mode, verdict):
    """The own-loop trial function passed from Python with a dict of schedules: a schedule whose
    val_loss is clearly higher is "worse" with mode = "min", and "better" with mode = "max"."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    train = _own_loop_train(tmp_path)
    from lrlab.lab import compare

    result = compare(
        train,
        SLOW_VS_BASE,
        seeds=3,
        objective="val_loss",
        mode=mode,
        settings=LOOP_SETTINGS,
        baseline="constant",
        out=tmp_path / "out",
        workers=0,
    )
    objective = Objective("val_loss", mode)
    with Store(result.db) as store:
        by_schedule: dict[str, list[float]] = {}
        for t in store.study_trials(result.study.name):
            by_schedule.setdefault(t.schedule, []).append(t.value(objective))
    assert min(by_schedule["tiny"]) > max(by_schedule["constant"])  # the premise
    assert result.verdicts == {"constant": "baseline", "tiny": verdict}


# --------------------------------------------------------------------------------------------
# A trial that raises, Ray, SIGKILL, lrlab find

FLAKY = """
import diabetes_loop


def train(trial):
    if trial.schedule_name == "cosine" and trial.seed == 1:
        raise RuntimeError("the data loader broke on seed 1")
    return diabetes_loop.train(trial)
"""


def test_a_trial_that_raises_for_one_seed(tmp_path, capsys):
    """One failed trial (its error in the report), the others finish, exit status 1."""
    study = copy_example("own-loop", tmp_path)
    (study.parent / "flaky_loop.py").write_text(FLAKY)
    study.write_text(study.read_text().replace("diabetes_loop:train", "flaky_loop:train"))
    out = tmp_path / "out"
    status, err = run_main(compare_args(study, out, "own-loop", "--workers", "0"), capsys)
    assert status == 1
    assert "6 trials run (5 done, 0 diverged, 1 failed)" in err
    assert "1 trial(s) failed" in err
    rows = stored(out / "results.sqlite")
    failed = {cell: row for cell, row in rows.items() if row[1] == "failed"}
    assert list(failed) == [("cosine", 1)]
    assert "the data loader broke on seed 1" in failed[("cosine", 1)][2]
    report = (out / "report.md").read_text()
    assert "the data loader broke on seed 1" in report


def test_own_loop_on_a_local_ray_instance(tmp_path):
    """``--executor ray``: the study's folder reaches the Ray workers; same numbers as inline."""
    pytest.importorskip("ray")
    study = copy_example("own-loop", tmp_path)
    out = tmp_path / "ray"
    args = compare_args(study, out, "own-loop", "--executor", "ray", "--workers", "2")
    env = environment(RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    proc = lrlab(*args, "--no-progress", cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6 trials run (6 done, 0 diverged, 0 failed)" in flat(proc.stderr)
    from lrlab.lab import compare

    inline = compare(
        None, study, seeds=SEEDS, settings={"epochs": 3}, out=tmp_path / "inline", workers=0
    )
    assert stored(out / "results.sqlite") == stored(inline.db)


SLOW = """
import os
import time

import diabetes_loop


def train(trial):
    time.sleep(float(os.environ.get("EXAMPLE_TRIAL_SLEEP", "0")))
    return diabetes_loop.train(trial)
"""


def _final_table(db: Path) -> list[dict]:
    from lrlab.lab.report import build_report, table_rows

    with Store(db) as store:
        rows = table_rows(build_report(store, "study"))
    return [{k: v for k, v in row.items() if "wall" not in k} for row in rows]


def test_sigkill_mid_sweep_then_a_rerun_gives_the_uninterrupted_table(tmp_path):
    """``lrlab compare`` with 2 local workers, killed (driver and workers) after two trials, then
    run again: the store and the final table equal an uninterrupted inline run's. (This is also
    the test that worker processes import the trial from the study's folder.)"""
    study = copy_example("own-loop", tmp_path)
    (study.parent / "slow_loop.py").write_text(SLOW)
    study.write_text(study.read_text().replace("diabetes_loop:train", "slow_loop:train"))
    out = tmp_path / "killed"
    args = [*compare_args(study, out, "own-loop", "--workers", "2"), "--no-progress"]
    env = environment(EXAMPLE_TRIAL_SLEEP="0.7")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrlab", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while len(done_keys(out / "results.sqlite")) < 2:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-sweep
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = done_keys(out / "results.sqlite")
    assert 2 <= len(before) < SCHEDULES * SEEDS
    env["EXAMPLE_TRIAL_SLEEP"] = "0"
    rerun = lrlab(*args, cwd=tmp_path, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(before)} already in the database" in flat(rerun.stderr)
    from lrlab.lab import compare

    whole = compare(
        None, study, seeds=SEEDS, settings={"epochs": 3}, out=tmp_path / "whole", workers=0
    )
    assert stored(out / "results.sqlite") == stored(whole.db)
    assert _final_table(out / "results.sqlite") == _final_table(whole.db)


def test_lrlab_find_on_the_own_model_example(tmp_path):
    """The LR range test takes the example's task and model as module:attribute references,
    imported from the working directory."""
    study = copy_example("own-model", tmp_path)
    args = ["find", "--task", "cancer.data:load", "--model", "cancer.nets:Net"]
    args += ["--steps", "120", "--batch-size", "32", "--no-plot", "--no-progress"]
    proc = lrlab(*args, "--out", str(tmp_path / "find"), cwd=study.parent)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert (tmp_path / "find" / "range_test.json").is_file()
    assert '"type": "cyclic"' in proc.stdout


def report_threads(trial):
    import torch

    trial.report(1, threads=torch.get_num_threads())


def test_a_user_trial_runs_with_the_threads_asked_for(tmp_path):
    """Like lrlab's trainer, a user trial gets ``threads`` torch threads (default 1 per worker),
    so that N workers do not run N x cores threads."""
    import torch

    from lrlab.lab import compare

    before = torch.get_num_threads()
    result = compare(
        report_threads,
        {"c": {"type": "constant", "lr": 0.1}},
        seeds=1,
        objective="threads",
        mode="min",
        out=tmp_path / "out",
        workers=0,
        threads=1,
    )
    with Store(result.db) as store:
        (trial,) = store.study_trials(result.study.name)
    assert trial.metrics["threads"] == [1.0]
    assert torch.get_num_threads() == before  # restored after the trial


@pytest.mark.parametrize(
    ("name", "module", "settings"),
    [
        (
            "lightning",
            "digits_lightning",
            {"epochs": 3, "batch_size": 64, "steps_per_epoch": 18, "hidden": 32},
        ),
        (
            "hf-trainer",
            "iris_hf",
            {"epochs": 3, "batch_size": 16, "steps_per_epoch": 6, "hidden": 16},
        ),
    ],
)
def test_a_framework_trial_that_diverges_is_diverged(name, module, settings, tmp_path, monkeypatch):
    """A rate of 1e30 makes the loss non-finite: the reporter's ``trial.report`` ends the fit
    (the exception goes through Lightning / the HF Trainer) and the trial is ``diverged``."""
    _needs(name)
    monkeypatch.setattr(sys, "path", list(sys.path))
    copy_example(name, tmp_path)
    sys.path.insert(0, str(tmp_path / name))
    train = __import__(module).train
    from lrlab.lab import compare

    objective = SPECS[name][1]
    result = compare(
        train,
        {"huge": {"type": "constant", "lr": 1e30}},
        seeds=1,
        objective=objective,
        mode=SPECS[name][2],
        settings=settings,
        out=tmp_path / "out",
        workers=0,
    )
    assert (result.summary.diverged, result.summary.failed) == (1, 0)
    with Store(result.db) as store:
        (trial,) = store.study_trials(result.study.name)
    assert str(trial.status) == "diverged"
    assert trial.epochs == [1]  # the first non-finite report ended the fit
