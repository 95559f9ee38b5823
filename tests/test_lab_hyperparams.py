"""Scheduled optimizer hyper-parameters in the lab: ``[schedules.NAME.hyperparams.KEY]`` tables,
``TrialSpec.hyperparams`` (keyed only when set), the trainer, a user trial and the report."""

from __future__ import annotations

import textwrap

import pytest
import torch

from lrlab import from_config
from lrlab.errors import ConfigError
from lrlab.lab import trainer as TR
from lrlab.lab.contract import TrialSpec, hyperparam_keys
from lrlab.lab.study import load_study, parse_study
from lrlab.lab.trial import Trial

STUDY = textwrap.dedent(
    """
    task = "digits"
    model = "mlp"
    epochs = 2
    batch_size = 100
    seeds = [3, 4]

    [schedules.onecycle]
    type = "onecycle"
    max_lr = 0.1
    total_steps = "${total_steps}"

    [schedules.onecycle.hyperparams.momentum]
    type = "onecycle_momentum"
    total_steps = "${total_steps}"

    [schedules.adam]
    type = "constant"
    lr = 0.001
    optimizer = { type = "adam" }

    [schedules.adam.hyperparams.momentum]
    type = "cosine"
    lr = 0.9
    end_lr = 0.5
    total = "${total_steps}"

    [schedules.cosine]
    type = "cosine"
    lr = 0.1
    total = "${total_steps}"
    """
)
DIGITS_ITERATIONS = 13  # ceil(1293 training digits / 100)


def study_file(tmp_path, text=STUDY):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_a_study_schedules_momentum_with_placeholders_resolved(tmp_path):
    study = load_study(study_file(tmp_path))
    total = 2 * DIGITS_ITERATIONS
    cells = {(c.schedule, c.seed): c.spec for c in study.cells}
    assert cells["onecycle", 3].hyperparams == {
        "momentum": {"type": "onecycle_momentum", "total_steps": total}
    }
    assert cells["adam", 4].hyperparams["momentum"]["total"] == total
    assert cells["cosine", 3].hyperparams == {}
    assert "hyperparams" not in cells["onecycle", 3].schedule  # not part of the lr config
    stored = study.to_dict()["schedules"]
    assert stored["onecycle"]["resolved_hyperparams"]["momentum"]["total_steps"] == total
    assert "hyperparams" not in stored["cosine"]  # a stored study without them is unchanged


HP = "[schedules.onecycle.hyperparams.momentum]"
BAD = [
    # (change to STUDY, text the one-line message must contain)
    (
        (
            'total_steps = "${total_steps}"\n\n[schedules.adam]',
            'total = "${total_steps}"\n\n[schedules.adam]',
        ),
        "schedules.onecycle.hyperparams.momentum: unknown key for 'onecycle_momentum' 'total'",
    ),
    (
        ('type = "onecycle_momentum"', 'type = "onecycle_momentum"\nbase_momentum = -1'),
        "schedules.onecycle.hyperparams.momentum.base_momentum must be",
    ),
    (
        (
            'total_steps = "${total_steps}"\n\n[schedules.adam]',
            'total_steps = "${totl}"\n\n[schedules.adam]',
        ),
        "schedules.onecycle.hyperparams.momentum.total_steps: unknown name 'totl'",
    ),
    (
        ('type = "onecycle_momentum"', 'type = "onecycle_momentm"'),
        "schedules.onecycle.hyperparams.momentum.type: unknown schedule type 'onecycle_momentm'",
    ),
    ((HP, "[schedules.onecycle.hyperparams.foo]"), "unknown hyper-parameter for 'sgd' 'foo'"),
    ((HP, "[schedules.onecycle.hyperparams.lr]"), "schedules.onecycle.hyperparams.lr: not allowed"),
    (
        ("[schedules.adam.hyperparams.momentum]", "[schedules.adam.hyperparams.dampening]"),
        "schedules.adam.hyperparams: unknown hyper-parameter for 'adam' 'dampening'",
    ),
    (
        (
            HP + '\ntype = "onecycle_momentum"',
            'hyperparams = { momentum = 0.9 }\n[x]\ntype = "onecycle_momentum"',
        ),
        "schedules.onecycle.hyperparams.momentum must be a schedule config table",
    ),
    (
        (
            HP + '\ntype = "onecycle_momentum"',
            'hyperparams = "momentum"\n[x]\ntype = "onecycle_momentum"',
        ),
        "schedules.onecycle.hyperparams must be a table",
    ),
]


@pytest.mark.parametrize(("change", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_hyperparams_are_one_line_naming_the_field(tmp_path, change, expected):
    old, new = change
    assert old in STUDY
    text = STUDY.replace(old, new, 1)
    if "[x]" in text:  # the sub-table turned into an inline value: drop its leftover keys
        text = text.split("[x]")[0] + "[schedules.adam]" + text.split("[schedules.adam]")[1]
    path = study_file(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    assert expected in message


def test_a_momentum_policy_is_accepted_as_the_scheduler_accepts_it():
    policy = {"type": "policy", "trigger": "plateau", "patience": 1, "factor": 0.5, "lr0": 0.9}
    schedules = {"p": {"type": "constant", "lr": 0.1, "hyperparams": {"momentum": policy}}}
    fields = {"task": "digits", "model": "mlp", "epochs": 1, "seeds": 1}
    study = parse_study({**fields, "schedules": schedules})
    assert study.cells[0].spec.hyperparams == {"momentum": policy}


def test_hyperparam_keys_follow_the_optimizer():
    assert hyperparam_keys({"type": "sgd"}) == ("momentum", "dampening", "weight_decay")
    assert hyperparam_keys({"type": "adamw"}) == ("momentum", "eps", "weight_decay")


# --------------------------------------------------------------------------------------------
# keys

#: Keys computed by main's code (commit f550dac, before TrialSpec had hyperparams) for these
#: specs: a spec without hyperparams keeps its stored results.
KEYS_BEFORE = {"trainer": "51123c5af174daaf", "trial": "830ee209651416af"}


def _trainer_spec(**kw) -> TrialSpec:
    schedule = {"type": "onecycle", "max_lr": 0.1, "total_steps": 40}
    return TrialSpec("digits", "mlp", schedule, epochs=2, batch_size=64, seed=3, **kw)


def test_a_spec_without_hyperparams_keeps_its_key():
    assert _trainer_spec().key() == KEYS_BEFORE["trainer"]
    assert _trainer_spec(hyperparams={}).key() == KEYS_BEFORE["trainer"]
    trial = TrialSpec(
        task=None,
        model=None,
        trial="m:f",
        settings={"epochs": 2},
        schedule={"type": "constant", "lr": 0.1},
        epochs=1,
        batch_size=1,
        seed=0,
        optimizer={"type": "adam"},
    )
    assert trial.key() == KEYS_BEFORE["trial"]
    momentum = {"momentum": {"type": "onecycle_momentum", "total_steps": 40}}
    with_momentum = _trainer_spec(hyperparams=momentum)
    assert with_momentum.key() != KEYS_BEFORE["trainer"]
    assert TrialSpec.from_dict(with_momentum.to_dict()).key() == with_momentum.key()
    old_dict = {k: v for k, v in _trainer_spec().to_dict().items() if k != "hyperparams"}
    assert TrialSpec.from_dict(old_dict).key() == KEYS_BEFORE["trainer"]  # a stored old spec


def test_a_spec_checks_its_hyperparams():
    with pytest.raises(ConfigError, match="hyperparams.lr: not allowed"):
        _trainer_spec(hyperparams={"lr": {"type": "constant", "lr": 0.1}})
    with pytest.raises(ConfigError, match="unknown hyper-parameter for 'sgd' 'betas'"):
        _trainer_spec(hyperparams={"betas": {"type": "constant", "lr": 0.1}})
    schedule = from_config({"type": "constant", "lr": 0.9})
    assert _trainer_spec(hyperparams={"momentum": schedule}).hyperparams == {
        "momentum": {"type": "constant", "lr": 0.9}
    }


# --------------------------------------------------------------------------------------------
# training


@pytest.fixture(scope="module")
def digits():
    from lrlab.lab.tasks import load_task

    return load_task("digits").subset(200, 50, 50)


@pytest.mark.parametrize("optimizer", [{"type": "sgd", "momentum": 0.0}, {"type": "adam"}])
def test_the_trainer_drives_momentum_step_by_step(digits, monkeypatch, optimizer):
    """The optimizer's momentum (betas[0] for Adam) at every step is the schedule's value."""
    seen: list[tuple[float, float]] = []
    make = TR.make_optimizer

    def spying(params, config):
        opt = make(params, config)
        opt.register_step_pre_hook(lambda o, args, kwargs: seen.append(_lr_momentum(o)))
        return opt

    monkeypatch.setattr(TR, "make_optimizer", spying)
    steps = 2 * TR.iterations_per_epoch(200, 50)
    lr = {"type": "onecycle", "max_lr": 0.1, "total_steps": steps}
    momentum = {"type": "cyclic", "base_lr": 0.0, "max_lr": 0.9, "step_size_up": 3}
    spec = TrialSpec(
        "digits", "mlp", lr, 2, 50, 0, optimizer=optimizer, hyperparams={"momentum": momentum}
    )
    TR.train_trial(spec, task=digits)
    assert [m for _, m in seen] == pytest.approx(list(from_config(momentum).values(steps)))
    assert [r for r, _ in seen] == pytest.approx(list(from_config(lr).values(steps)))


def _lr_momentum(opt: torch.optim.Optimizer) -> tuple[float, float]:
    group = opt.param_groups[0]
    return group["lr"], group["momentum"] if "momentum" in group else group["betas"][0]


def test_a_user_trial_scheduler_drives_the_studys_hyperparams():
    momentum = {"type": "constant", "lr": 0.8}
    spec = TrialSpec(
        None,
        None,
        {"type": "constant", "lr": 0.1},
        1,
        1,
        0,
        trial="m:f",
        hyperparams={"momentum": momentum, "foo": momentum},
    )
    trial = Trial(spec)
    assert set(trial.hyperparams) == {"momentum", "foo"}
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0, momentum=0.9)
    with pytest.raises(ConfigError, match="has no 'foo'"):  # the user's optimizer decides
        trial.scheduler(opt)
    good = Trial(TrialSpec(**{**spec.to_dict(), "hyperparams": {"momentum": momentum}}))
    decay = {"weight_decay": {"type": "constant", "lr": 1e-3}}
    good.scheduler(opt, hyperparams=decay)
    assert opt.param_groups[0]["momentum"] == 0.8 and opt.param_groups[0]["weight_decay"] == 1e-3
    with pytest.raises(ConfigError, match="already driven"):
        good.scheduler(opt, hyperparams={"momentum": momentum})


def test_the_report_lists_the_scheduled_hyperparams(tmp_path):
    from types import SimpleNamespace

    from lrlab.lab.contract import DEFAULT_OBJECTIVE
    from lrlab.lab.report import _settings_lines

    study = load_study(study_file(tmp_path)).to_dict()
    report = SimpleNamespace(
        study=study, objective=DEFAULT_OBJECTIVE, baseline="onecycle", target=None
    )
    line = next(x for x in _settings_lines(report) if "hyper-parameters" in x)  # type: ignore[arg-type]
    assert "`onecycle`: momentum" in line and "onecycle_momentum" in line
    assert "`cosine`" not in line


def test_a_trial_study_passes_its_hyperparams_to_the_users_scheduler():
    """With trial = ..., the user's optimizer is unknown at load: any key but lr is accepted,
    placeholders resolve from [settings], and trial.scheduler(opt) checks the keys."""
    momentum = {"type": "cosine", "lr": 0.9, "total": "${total_steps}"}
    data = {
        "trial": "m:train",
        "objective": "val_loss",
        "mode": "min",
        "seeds": 1,
        "settings": {"epochs": 2, "steps_per_epoch": 5},
        "schedules": {"a": {"type": "constant", "lr": 0.1, "hyperparams": {"momentum": momentum}}},
    }
    study = parse_study(data, trial_fn=lambda trial: None)
    spec = study.cells[0].spec
    assert spec.hyperparams == {"momentum": {**momentum, "total": 10}}
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    Trial(spec).scheduler(opt)
    assert opt.param_groups[0]["betas"][0] == 0.9
    data["schedules"]["a"]["hyperparams"] = {"lr": momentum}
    with pytest.raises(ConfigError, match="schedules.a.hyperparams.lr: not allowed"):
        parse_study(data, trial_fn=lambda trial: None)
