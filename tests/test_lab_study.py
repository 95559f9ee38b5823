"""Study files: validation with one-line errors naming the field, placeholders, expansion."""

from __future__ import annotations

import math
import textwrap

import pytest

import lrlab
from lrlab.errors import ConfigError
from lrlab.lab.study import (
    PLACEHOLDERS,
    builtin_studies,
    evaluate_placeholder,
    iterations_per_epoch,
    load_study,
    parse_study,
)
from lrlab.lab.tasks import load_task
from lrlab.lab.trainer import TrialSpec
from lrlab.lab.trainer import iterations_per_epoch as batches_per_epoch

TINY = textwrap.dedent(
    """
    description = "tiny"
    task = "digits"
    model = "mlp"
    epochs = 4
    batch_size = 64
    seeds = [3, 7]
    baseline = "step"
    target_acc = 0.5

    [schedules.step]
    type = "multistep"
    lr = 0.1
    milestones = ["${0.5*total_steps}", "${0.75*total_steps}"]

    [schedules.ralr]
    type = "ralr"
    base = { type = "cosine", lr = 0.1, total = "${total_steps}" }
    period = "${steps_per_epoch}"
    seed = "${seed}"

    [schedules.adam_epoch]
    type = "constant"
    lr = 0.001
    optimizer = { type = "adam" }
    lr_interval = "epoch"
    """
)


def write(tmp_path, text, name="study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def digits_iterations(batch_size):
    return batches_per_epoch(len(load_task("digits").y_train), batch_size)


def test_builtin_studies_load_and_expand():
    names = builtin_studies()
    assert {"default", "ralr", "clr", "sequences", "kdecay"} <= set(names)
    assert all(desc for desc in names.values())
    for name in names:
        study = load_study(name)
        cells = study.cells
        assert len(cells) == len(study.schedules) * len(study.seeds)
        assert len({c.key for c in cells}) == len(cells)  # every cell is a distinct trial
        assert study.baseline in study.schedules
        for cell in cells:
            lrlab.from_config(cell.spec.schedule)  # fully resolved, buildable


def test_default_study_is_the_issue_comparison():
    study = load_study()
    assert study.name == "default" and study.task == "mnist1d" and study.model == "cnn"
    assert len(study.seeds) >= 5
    types = {name: e.config["type"] for name, e in study.schedules.items()}
    base = study.resolved_config("multistep")
    total = study.epochs * study.iterations_per_epoch
    assert base["gamma"] == 0.1
    # every schedule shares one peak learning rate (see the comment in default.toml)
    ralr = study.resolved_config("ralr")
    assert ralr["base"] == base and ralr["p"] == 0.5 and (ralr["low"], ralr["high"]) == (1.0, 3.0)
    assert study.resolved_config("cosine")["lr"] == base["lr"]
    assert base["milestones"] == [round(0.5 * total), round(0.75 * total)]
    assert sorted(types.values()) == sorted(
        ["multistep", "ralr", "cyclic", "cosine", "kdecay", "kdecay", "sequence", "policy"]
    )
    clr = study.resolved_config("clr_triangular2")
    assert clr["mode"] == "triangular2"
    kd = [study.resolved_config(n) for n, t in types.items() if t == "kdecay"]
    assert {c["base"]["type"] for c in kd} == {"cosine", "polynomial"}
    assert all(c["k"] == 1.5 and c["form"] == "warp" for c in kd)
    seq3 = study.resolved_config("seq3_epoch")
    assert seq3["kind"] == "seq3" and seq3["period"] == study.iterations_per_epoch
    # seq4 by cutoff is a metric-driven policy (lrlab.policies)
    cut = study.resolved_config("seq4_cutoff")
    assert cut["trigger"] == "cutoff" and cut["values"]["kind"] == "seq4"


def test_placeholders_and_expansion(tmp_path):
    study = load_study(write(tmp_path, TINY))
    ipe = digits_iterations(64)
    assert study.iterations_per_epoch == ipe == iterations_per_epoch("digits", 64)
    assert study.name == "study" and study.seeds == (3, 7) and study.target_acc == 0.5
    cells = study.cells
    # seed-major order: every schedule of the first seed first
    assert [(c.schedule, c.seed) for c in cells] == [
        ("step", 3),
        ("ralr", 3),
        ("adam_epoch", 3),
        ("step", 7),
        ("ralr", 7),
        ("adam_epoch", 7),
    ]
    step = cells[0].spec.schedule
    assert step["milestones"] == [math.floor(0.5 * 4 * ipe + 0.5), math.floor(0.75 * 4 * ipe + 0.5)]
    ralr = {c.seed: c.spec.schedule for c in cells if c.schedule == "ralr"}
    assert ralr[3]["seed"] == 3 and ralr[7]["seed"] == 7  # "${seed}" is the trial seed
    assert ralr[3]["period"] == ipe and ralr[3]["base"]["total"] == 4 * ipe
    adam = cells[2].spec
    assert adam.optimizer["type"] == "adam" and adam.lr_interval == "epoch"
    assert cells[0].spec.optimizer["type"] == "sgd" and cells[0].spec.lr_interval == "step"
    assert isinstance(cells[0].spec, TrialSpec) and cells[0].spec.epochs == 4
    assert study.variables(study.schedules["adam_epoch"], 3)["steps_per_epoch"] == 1
    # loading twice gives the same trial keys (resume depends on it)
    assert [c.key for c in load_study(write(tmp_path, TINY)).cells] == [c.key for c in cells]


def test_overrides_rescale_the_horizons(tmp_path):
    study = load_study(write(tmp_path, TINY), seeds=3, epochs=8)
    ipe = digits_iterations(64)
    assert study.seeds == (0, 1, 2) and study.epochs == 8
    assert study.resolved_config("step")["milestones"] == [4 * ipe, 6 * ipe]
    assert study.to_dict()["schedules"]["step"]["resolved"]["milestones"] == [4 * ipe, 6 * ipe]


def test_placeholder_evaluator_is_arithmetic_only():
    env = {name: 10 for name in PLACEHOLDERS}
    assert evaluate_placeholder("0.25 * total_steps + 1", env) == 4  # 3.5 rounds half up
    assert evaluate_placeholder("-(epochs // 3)", env) == -3
    for bad in (
        "__import__('os').system('true')",
        "epochs.real",
        "[1][0]",
        "2 ** 8",
        "lambda: 1",
        "epochs if 1 else 2",
    ):
        with pytest.raises(ValueError):
            evaluate_placeholder(bad, env)
    with pytest.raises(ValueError, match="did you mean 'total_steps'"):
        evaluate_placeholder("totl_steps", env)
    with pytest.raises(ValueError, match="divides by zero"):
        evaluate_placeholder("epochs / 0", env)


BAD_STUDIES = [
    # (change to TINY, text the one-line message must contain)
    (("epochs = 4", "epoch = 4"), "unknown field 'epoch' (did you mean 'epochs'?)"),
    (("epochs = 4", "epochs = 0"), "epochs must be an integer >= 1"),
    (('task = "digits"', 'task = "digit"'), "task: unknown task 'digit' (did you mean 'digits'?)"),
    (('model = "mlp"', 'model = "mpl"'), "model: unknown model 'mpl' (did you mean 'mlp'?)"),
    (('model = "mlp"', 'model = "cnn"'), "model: 'cnn' needs 1-D signals"),
    (
        ('baseline = "step"', 'baseline = "stpe"'),
        "baseline 'stpe' is not a schedule of this study (did you mean 'step'?)",
    ),
    (("seeds = [3, 7]", "seeds = [3, 3]"), "seeds must not repeat"),
    (("seeds = [3, 7]", 'seeds = "five"'), "seeds must be a count"),
    (("target_acc = 0.5", "target_acc = 50"), "target_acc must be a fraction in (0, 1]"),
    (("lr = 0.1\nmilestones", "lr = -0.1\nmilestones"), "schedules.step: multistep.lr must be"),
    (
        ('type = "multistep"', 'type = "multstep"'),
        "schedules.step: unknown schedule type 'multstep' (did you mean 'multistep'?)",
    ),
    (
        ('period = "${steps_per_epoch}"', 'period = "${steps_per_epok}"'),
        "schedules.ralr.period: unknown name 'steps_per_epok'",
    ),
    (
        ('period = "${steps_per_epoch}"', 'perod = "${steps_per_epoch}"'),
        "schedules.ralr: unknown key for 'ralr' 'perod' (did you mean 'period'?)",
    ),
    (
        ('optimizer = { type = "adam" }', 'optimizer = { type = "adma" }'),
        "schedules.adam_epoch: unknown optimizer.type 'adma' (did you mean 'adam'?)",
    ),
    (
        ('optimizer = { type = "adam" }', 'optimizer = { type = "adam", lr = 1 }'),
        "optimizer.lr is not allowed",
    ),
    (
        ('lr_interval = "epoch"', 'lr_interval = "epochs"'),
        "lr_interval must be one of step, epoch (did you mean 'epoch'?)",
    ),
    (
        ("[schedules.step]", "[schedule.step]"),
        "unknown field 'schedule' (did you mean 'schedules'?)",
    ),
    (("epochs = 4", "epochs = [4"), "not valid TOML"),
]


@pytest.mark.parametrize(("change", "expected"), BAD_STUDIES, ids=[e for _, e in BAD_STUDIES])
def test_bad_study_is_one_line_error_naming_the_field(tmp_path, change, expected):
    old, new = change
    assert old in TINY
    path = write(tmp_path, TINY.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


def test_fields_left_out_take_their_defaults():
    study = parse_study(
        {
            "task": "digits",
            "model": "mlp",
            "epochs": 1,
            "schedules": {"a": {"type": "constant", "lr": 0.1}},
        }
    )
    assert study.seeds == (0, 1, 2, 3, 4)  # seeds = 5, as the field's help says
    assert [c.seed for c in study.cells] == [0, 1, 2, 3, 4]
    assert (study.batch_size, study.lr_interval, study.settings) == (128, "step", {})


def test_missing_fields_and_sources():
    with pytest.raises(ConfigError, match="missing required field 'model'"):
        parse_study(
            {"task": "digits", "epochs": 1, "schedules": {"a": {"type": "constant", "lr": 0.1}}}
        )
    with pytest.raises(ConfigError, match="at least one"):
        parse_study({"task": "digits", "model": "mlp", "epochs": 1, "schedules": {}})
    with pytest.raises(ConfigError, match=r"unknown study 'defualt' \(did you mean 'default'\?\)"):
        load_study("defualt")
    with pytest.raises(ConfigError, match="does not exist"):
        load_study("no/such/study.toml")


def test_relative_data_dir_is_taken_from_the_study_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    text = 'data_dir = "data"\n' + TINY
    study = load_study(write(tmp_path / "sub", text))
    assert study.data_dir == str((tmp_path / "sub" / "data").resolve())
    assert all(c.spec.data_dir == study.data_dir for c in study.cells)


def test_objective_target_margin_and_time_limit_fields(tmp_path):
    text = TINY.replace("target_acc = 0.5", 'target = 0.3\nobjective = "val_loss"\nmode = "min"')
    study = load_study(write(tmp_path, "margin = 0.01\ntime_limit = 30\n" + text))
    assert (study.objective, study.mode, study.target) == ("val_loss", "min", 0.3)
    config = study.to_dict()
    assert config["objective"] == {"name": "val_loss", "mode": "min"} and config["target"] == 0.3
    assert (config["margin"], config["time_limit"]) == (0.01, 30.0)
    assert load_study(write(tmp_path, TINY)).to_dict()["objective"] == {
        "name": "test_acc",
        "mode": "max",
    }
    with pytest.raises(ConfigError, match="margin must be a finite number >= 0.0"):
        load_study(write(tmp_path, "margin = -1\n" + TINY))
    with pytest.raises(ConfigError, match="time_limit must be a finite number > 0.0"):
        load_study(write(tmp_path, "time_limit = 0\n" + TINY))
