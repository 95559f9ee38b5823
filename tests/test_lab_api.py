"""``lrlab.lab.compare``: the Python entry point on the user's own trial function, and its
one-line refusal of functions worker processes cannot reach."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from lrlab.errors import ConfigError
from lrlab.lab import compare
from lrlab.lab.store import Store

SCHEDULES = {
    "high": {"type": "constant", "lr": 0.5},
    "low": {"type": "constant", "lr": 0.1},
}

MODULE = """
def train(trial):
    lr = float(trial.schedule(0))
    for epoch in range(1, trial.settings["epochs"] + 1):
        # a lower rate gives a lower loss; the seed adds a little noise
        trial.report(epoch, val_loss=lr + 0.001 * ((trial.seed * 7919) % 13) + 1.0 / epoch)
    return {"acc": 1 - lr}
"""


def closure_trial():
    def train(trial):
        for epoch in range(1, 3):
            trial.report(epoch, val_loss=float(trial.schedule(0)) + 0.01 * trial.seed)

    return train


def test_inline_compare_with_any_callable_and_a_min_objective(tmp_path):
    result = compare(
        closure_trial(),
        SCHEDULES,
        seeds=4,
        objective="val_loss",
        mode="min",
        baseline="high",
        out=tmp_path / "out",
        workers=0,
    )
    assert result.summary.done == 8 and result.paths["report"].is_file()
    assert result.verdicts == {"high": "baseline", "low": "better"}  # lower loss is better
    assert {r["schedule"] for r in result.rows} == {"high", "low"}
    again = compare(
        closure_trial(), SCHEDULES, seeds=4, objective="val_loss", mode="min",
        baseline="high", out=tmp_path / "out", workers=0,
    )  # fmt: skip
    assert again.summary.ran == 0  # resumable: nothing trained twice


def test_a_module_function_runs_in_worker_processes(tmp_path, monkeypatch):
    (tmp_path / "apitrial.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import apitrial

    result = compare(
        apitrial.train,
        SCHEDULES,
        seeds=2,
        objective="acc",
        mode="max",
        settings={"epochs": 2},
        out=tmp_path / "out",
        workers=2,
    )
    assert result.summary.done == 4
    with Store(result.db) as store:
        trials = store.study_trials(result.study.name)
        assert {t.final["acc"] for t in trials} == {0.5, 0.9}
        assert all(t.spec["trial"] == "apitrial:train" for t in trials)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (lambda trial: None, "train is a lambda: worker processes cannot import it"),
        (closure_trial(), "is defined inside a function (a closure)"),
        (42, "train must be a function or 'module:function'"),
    ],
)
def test_unreachable_functions_are_refused_before_anything_runs(tmp_path, train, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compare(train, SCHEDULES, objective="v", mode="min", out=tmp_path / "out", workers=2)
    assert not (tmp_path / "out").exists()


SCRIPT = """
from lrlab.lab import compare

def train(trial):
    for epoch in (1, 2):
        trial.report(epoch, val_loss=float(trial.schedule(0)) + 0.01 * trial.seed)

{call}
"""
CALL = (
    'r = compare(train, {{"a": {{"type": "constant", "lr": 0.1}}, '
    '"b": {{"type": "constant", "lr": 0.2}}}}, seeds=2, objective="val_loss", mode="min", '
    'out=r"{out}", workers=2)\nprint("done", r.summary.done)'
)


@pytest.mark.parametrize("guarded", [True, False])
def test_a_script_needs_the_main_guard(tmp_path, guarded):
    call = CALL.format(out=tmp_path / "out")
    if guarded:
        call = 'if __name__ == "__main__":\n' + textwrap.indent(call, "    ")
    script = tmp_path / "myscript.py"
    script.write_text(SCRIPT.format(call=call))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    if guarded:
        assert proc.returncode == 0, proc.stderr
        assert "done 4" in proc.stdout
    else:
        assert proc.returncode != 0
        assert "put the compare(...) call under 'if __name__ == \"__main__\":'" in proc.stderr
        assert not (tmp_path / "out").exists()


def test_compare_runs_a_study_file_as_the_cli_does(tmp_path, monkeypatch):
    (tmp_path / "apitrial.py").write_text(MODULE)
    (tmp_path / "s.toml").write_text(
        'trial = "apitrial:train"\nobjective = "val_loss"\nmode = "min"\nseeds = 3\n'
        "[settings]\nepochs = 2\n"
        '[schedules.high]\ntype = "constant"\nlr = 0.5\n'
        '[schedules.low]\ntype = "constant"\nlr = 0.1\n'
    )
    result = compare(None, tmp_path / "s.toml", out=tmp_path / "out", workers=0)
    assert result.summary.done == 6  # the file's 3 seeds
    assert result.verdicts == {"high": "baseline", "low": "better"}
    with pytest.raises(ConfigError, match="with a study file, name the trial function"):
        compare(closure_trial(), tmp_path / "s.toml", workers=0)
