"""The user's own trial function, task and model: the Trial object, study fields naming user
code, one-line errors for bad user code, failures and divergence of user trials."""

from __future__ import annotations

import math
import textwrap

import pytest

from lrlab.errors import ConfigError
from lrlab.lab.contract import Objective, TrialSpec, TrialStatus
from lrlab.lab.store import Store
from lrlab.lab.study import load_study
from lrlab.lab.sweep import run_sweep
from lrlab.lab.trial import Trial, TrialError, run_user_trial

USER_TRIAL = '''
import math

def train(trial):
    """A deterministic stand-in for a training loop: numbers from the seed and the schedule."""
    s = trial.settings
    if s.get("raise_for_seed") == trial.seed:
        raise RuntimeError("user code broke\\nsecond line")
    lr0 = float(trial.schedule(0))
    for epoch in range(1, s["epochs"] + 1):
        loss = 1.0 / (epoch + trial.seed + 1) + lr0
        if s.get("nan_at") == epoch and trial.schedule_name == "b":
            loss = math.nan
        if s.get("bad_metric") and epoch == 2:
            trial.report(epoch, val_loss="low")
        trial.report(epoch, val_loss=loss, train_loss=2 * loss)
    if s.get("return_list"):
        return [1, 2]
    return {"test_acc": 0.5 + 0.01 * trial.seed, "total": s["total"]}

def two_args(trial, other):
    pass

not_callable = 3
'''

STUDY = """
trial = "usertrial:train"
objective = "val_loss"
mode = "min"
seeds = 2
[settings]
epochs = 3
steps_per_epoch = 10
total = "${epochs * steps_per_epoch}"
[schedules.a]
type = "cosine"
lr = 0.1
total = "${total_steps}"
[schedules.b]
type = "constant"
lr = 0.05
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "usertrial.py").write_text(USER_TRIAL)
    return tmp_path


def study_file(folder, text=STUDY, name="study.toml"):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def by_cell(store, name):
    return {(t.schedule, t.seed): t for t in store.study_trials(name)}


def test_trial_study_expands_with_settings_placeholders(folder):
    study = load_study(study_file(folder))
    assert study.trial == "usertrial:train" and (study.objective, study.mode) == ("val_loss", "min")
    spec = study.cells[0].spec
    assert spec.trial == "usertrial:train" and spec.settings["total"] == 30
    assert spec.schedule == {"type": "cosine", "lr": 0.1, "total": 30}  # total_steps = 3 * 10
    assert spec.schedule_name == "a" and spec.code_dir == str(folder)
    # the name, folder and objective do not enter the key; the settings do
    assert study.cells[0].key == TrialSpec.from_dict({**spec.to_dict(), "code_dir": "/x"}).key()
    other = load_study(study_file(folder, STUDY.replace("epochs = 3", "epochs = 4"), "s2.toml"))
    assert other.cells[0].key != study.cells[0].key


@pytest.mark.parametrize("workers", [0, 2])
def test_user_trials_run_and_store_every_metric(folder, workers):
    study = load_study(study_file(folder))
    with Store(folder / "r.sqlite") as store:
        summary = run_sweep(study, store, workers=workers, progress=False)
        assert (summary.done, summary.failed) == (4, 0)
        trials = by_cell(store, study.name)
        t = trials[("a", 1)]
        assert t.status == TrialStatus.DONE and t.epochs == [1, 2, 3]
        assert t.metrics["val_loss"] == [1 / (e + 2) + 0.1 for e in (1, 2, 3)]
        assert t.metrics["train_loss"] == [2 * v for v in t.metrics["val_loss"]]
        assert t.final == {"test_acc": 0.51, "total": 30.0}
        assert t.value(Objective("val_loss", "min")) == t.metrics["val_loss"][-1]
        assert t.value(Objective("test_acc", "max")) == 0.51
        assert trials[("b", 0)].metrics["val_loss"][0] == 1 / 2 + 0.05
        again = run_sweep(study, store, workers=workers, progress=False)
        assert again.ran == 0 and set(store.attempts().values()) == {1}


def test_raising_nan_and_bad_values_fail_or_diverge_only_their_trial(folder):
    text = STUDY.replace("epochs = 3", "epochs = 3\nraise_for_seed = 1\nnan_at = 2")
    study = load_study(study_file(folder, text))
    with Store(folder / "r.sqlite") as store:
        summary = run_sweep(study, store, workers=0, progress=False)
        assert (summary.done, summary.diverged, summary.failed) == (1, 1, 2)
        trials = by_cell(store, study.name)
        assert trials[("a", 1)].error == "RuntimeError: user code broke"
        diverged = trials[("b", 0)]
        assert diverged.status == TrialStatus.DIVERGED and diverged.epochs == [1, 2]
        assert math.isnan(diverged.metrics["val_loss"][1])  # the epoch that diverged is kept
        assert trials[("a", 0)].status == TrialStatus.DONE
        retry = run_sweep(study, store, workers=0, progress=False)
        assert retry.ran == 2 and retry.failed == 2  # failed trials are retried


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("bad_metric = true", "trial.report: metric 'val_loss' must be a number, got 'low'"),
        ("return_list = true", "must return a dict of final metrics or None, got list"),
    ],
)
def test_misused_trial_fails_with_a_message(folder, setting, message):
    study = load_study(study_file(folder, STUDY.replace("epochs = 3", f"epochs = 3\n{setting}")))
    with Store(folder / "r.sqlite") as store:
        run_sweep(study, store, workers=0, progress=False)
        errors = {t.error for t in store.study_trials(study.name)}
    assert len(errors) == 1 and message in errors.pop()


def test_an_objective_never_reported_fails_the_trial(folder):
    study = load_study(study_file(folder, STUDY.replace('"val_loss"', '"val_acc"')))
    with pytest.raises(TrialError, match="objective 'val_acc' was never reported.*val_loss"):
        run_user_trial(study.cells[0].spec)


BAD_FIELDS = [
    (("usertrial:train", "nosuchmodule:train"), "trial: cannot import 'nosuchmodule'"),
    (("usertrial:train", "usertrial:trian"), "trial: 'usertrial' has no attribute 'trian' (did you mean 'train'?)"),
    (("usertrial:train", "usertrial:not_callable"), "trial: usertrial:not_callable is not callable"),
    (("usertrial:train", "usertrial:two_args"), "trial: usertrial:two_args(trial, other) must take the trial"),
    (("usertrial:train", "usertrial"), "trial must be 'module:function'"),
    (('mode = "min"', 'mode = "lowest"'), "mode 'lowest'"),
    (('mode = "min"\n', ""), 'mode: with objective = \'val_loss\', say whether "min" or "max"'),
    (('objective = "val_loss"\n', ""), "objective: a study with trial = ... must name its objective"),
    (("[settings]", 'model = "mlp"\n[settings]'), "model is for lrlab's trainer"),
    (("seeds = 2", "seeds = 100000000"), "seeds must be a count from 1 to 10000"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "expected"), BAD_FIELDS, ids=[e for _, e in BAD_FIELDS])
def test_bad_user_code_fields_are_one_line_naming_the_field(folder, change, expected):
    old, new = change
    assert old in STUDY
    path = study_file(folder, STUDY.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))
    assert expected in str(info.value)


def test_trial_object_reports_and_builds_a_scheduler(folder):
    import torch

    study = load_study(study_file(folder))
    spec = study.cells[0].spec
    ticks = []
    trial = Trial(spec, on_epoch=ticks.append)
    assert (trial.seed, trial.schedule_name, trial.settings["total"]) == (0, "a", 30)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    sched = trial.scheduler(opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    for _ in range(15):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)  # cosine at half its horizon of 30
    trial.report(1, val_loss=torch.tensor(0.5), acc=1)
    trial.report(1, extra=2.0)  # the same epoch again adds to it
    assert trial.rows == [{"epoch": 1.0, "val_loss": 0.5, "acc": 1.0, "extra": 2.0}]
    with pytest.raises(TrialError, match="epochs must not decrease"):
        trial.report(2, x=1.0) or trial.report(1, x=1.0)
    with pytest.raises(TrialError, match="metric 'flag' must be a number"):
        trial.report(3, flag=True)
    assert ticks == [1, 2]


USER_TASK = """
import numpy as np
import torch
from lrlab.lab import make_task

def load():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    return make_task("toy", x[:160], y[:160], x[160:], y[160:], 2)

class Net(torch.nn.Module):
    def __init__(self, task):
        super().__init__()
        self.layer = torch.nn.Linear(task.input_shape[0], task.num_classes)

    def forward(self, x):
        return self.layer(x)

def not_a_module(task):
    return 3

def load_list():
    return [1]
"""

TASK_STUDY = """
task = "usertask:load"
model = "usertask:Net"
epochs = 2
batch_size = 32
seeds = 2
[schedules.fixed]
type = "constant"
lr = 0.1
[schedules.cos]
type = "cosine"
lr = 0.2
total = "${total_steps}"
"""


def test_user_task_and_model_with_lrlab_trainer(tmp_path):
    (tmp_path / "usertask.py").write_text(USER_TASK)
    study = load_study(study_file(tmp_path, TASK_STUDY))
    assert study.iterations_per_epoch == 5  # 144 training examples after the hold-out / 32
    with Store(tmp_path / "r.sqlite") as store:
        summary = run_sweep(study, store, workers=2, progress=False)
        assert (summary.done, summary.failed) == (4, 0)
        t = store.study_trials(study.name)[0]
        assert t.epochs == [1, 2] and 0 <= t.final["test_acc"] <= 1
        assert set(t.metrics) >= {"train_loss", "val_loss", "val_acc", "test_acc", "lr"}
        assert t.final["best_epoch"] in (1.0, 2.0)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("usertask:Net", "usertask:not_a_module"), "model: usertask:not_a_module(task) returned a int, not a torch.nn.Module"),
        (("usertask:load", "usertask:load_list"), "task: usertask:load_list() returned a list, not a lrlab.lab.Task"),
        (("usertask:load", "usertask:Net"), "task: usertask:Net(task) must take no required argument"),
    ],
)  # fmt: skip
def test_bad_user_task_or_model_is_one_line(tmp_path, change, expected):
    (tmp_path / "usertask.py").write_text(USER_TASK)
    path = study_file(tmp_path, TASK_STUDY.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert "\n" not in str(info.value) and expected in str(info.value)
