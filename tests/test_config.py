"""Configs: exact round trips through dicts, JSON and TOML; clear errors at construction."""

import json

import pytest

import lrlab
from lrlab.errors import ConfigError
from lrlab.schedules import EXAMPLES as CANONICAL
from lrlab.schedules import REGISTRY, dump_config, from_config, load_config

# the canonical example of every type, plus variants that exercise other fields
EXAMPLES = [
    *CANONICAL.values(),
    {"type": "step", "lr": 0.1, "step_size": 30, "gamma": 0.1},
    {"type": "cosine_restarts", "lr": 0.1, "period": 10, "end_lr": 0.0, "period_mult": 2.0},
    {
        "type": "cosine_restarts",
        "lr": 0.1,
        "period": 3,
        "period_mult": 1.8,
        "restart_decay": 0.5,
        "max_restarts": 3,
    },
    {
        "type": "cyclic",
        "mode": "exp_range",
        "base_lr": 0.001,
        "max_lr": 0.006,
        "step_size_up": 20,
        "step_size_down": 50,
        "gamma": 0.999,
    },
    {
        "type": "ralr",
        "base": {"type": "multistep", "lr": 0.1, "milestones": [150, 225]},
        "p": 0.5,
        "low": 1,
        "high": 3,
        "period": 391,
        "seed": 0,
    },
    {
        "type": "kdecay",
        "base": {"type": "polynomial", "lr": 0.1, "total": 100},
        "k": 2,
        "form": "additive",
    },
    {"type": "sequence", "kind": "seq3", "lr": 0.01, "period": 40, "length": 50},
    {"type": "onecycle", "max_lr": 0.1, "total_steps": 100, "three_phase": True},
    {"type": "wsd", "lr": 0.1, "total": 100, "decay_steps": 10, "decay": "1-sqrt"},
    {"type": "inverse_sqrt", "lr": 0.1, "warmup_steps": 10, "timescale": 100},
]


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda c: c["type"])
def test_round_trip_is_exact(config, tmp_path):
    schedule = lrlab.from_config(config)
    canonical = schedule.to_config()
    assert from_config(canonical) == schedule
    assert from_config(canonical).to_config() == canonical
    assert json.loads(json.dumps(canonical)) == canonical
    for name in ("c.json", "c.toml"):
        dump_config(canonical, tmp_path / name)
        assert load_config(tmp_path / name) == canonical
    # every key the user gave survives (defaults are filled in, values normalised to float/int)
    for key, value in config.items():
        if not isinstance(value, (dict, list)):
            assert canonical[key] == value


def test_every_registered_schedule_type_has_an_example():
    schedule_types = {name for name, cls in REGISTRY.items() if issubclass(cls, lrlab.Schedule)}
    assert schedule_types <= {c["type"] for c in EXAMPLES}


def test_inline_json_and_toml_file(tmp_path):
    assert load_config('{"type": "constant", "lr": 0.2}') == {"type": "constant", "lr": 0.2}
    path = tmp_path / "s.toml"
    path.write_text('type = "ralr"\np = 0.5\n[base]\ntype = "constant"\nlr = 0.1\n')
    assert from_config(load_config(path)).base.lr == 0.1


def test_loading_never_executes_code(tmp_path):
    with pytest.raises(ConfigError):
        from_config({"type": "__import__('os').system('true')"})
    with pytest.raises(ConfigError):
        load_config("__import__('os')")


@pytest.mark.parametrize(
    "config,fragments",
    [
        ({"type": "cosine", "lr": -0.1, "total": 10}, ["cosine.lr", ">= 0", "-0.1"]),
        ({"type": "ralr", "base": {"type": "constant", "lr": 0.1}, "p": 1.5}, ["ralr.p", "<= 1"]),
        (
            {"type": "ralr", "base": {"type": "constant", "lr": 0.1}, "low": 3, "high": 1},
            ["ralr.low", "ralr.high"],
        ),
        ({"type": "cosine", "lr": 0.1, "total": 0}, ["cosine.total", ">= 1"]),
        ({"type": "polynomial", "lr": 0.1, "total": -5}, ["polynomial.total"]),
        (
            {"type": "cosinee", "lr": 0.1},
            ["unknown schedule type", "did you mean 'cosine'", "allowed"],
        ),
        (
            {"type": "cyclic", "base_lr": 0.1, "max_lr": 1, "step_sze_up": 3},
            ["step_sze_up", "did you mean 'step_size_up'"],
        ),
        (
            {"type": "cyclic", "base_lr": 0.1, "max_lr": 1, "mode": "triangle"},
            ["cyclic.mode", "triangular"],
        ),
        ({"type": "kdecay", "base": {"type": "constant", "lr": 0.1}}, ["kdecay.total", "horizon"]),
        (
            {"type": "kdecay", "base": {"type": "cosine", "lr": 0.1, "total": 5}, "form": "mult"},
            ["kdecay.form", "warp", "additive"],
        ),
        ({"type": "sequence", "kind": "seq5", "lr": 0.1}, ["sequence.kind", "seq4"]),
        ({"type": "multistep", "lr": 0.1, "milestones": [5, 2]}, ["milestones", "sorted"]),
        ({"type": "cosine", "total": 10}, ["missing", "'lr'"]),
        ({"type": "cosine", "lr": "0.1", "total": 10}, ["cosine.lr", "'0.1'"]),
        ({"type": "step", "lr": 0.1, "step_size": 2.5}, ["step.step_size", "integer"]),
        ({"lr": 0.1}, ["no 'type' key"]),
    ],
)
def test_bad_input_names_the_field_and_what_is_allowed(config, fragments):
    with pytest.raises(ConfigError) as info:
        from_config(config)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_schedules_are_immutable():
    s = from_config({"type": "cosine", "lr": 0.1, "total": 10})
    with pytest.raises(AttributeError):
        s.lr = 1.0


def test_composition_sugar():
    base = from_config({"type": "cosine", "lr": 0.1, "total": 100})
    w = base.with_warmup(10)
    assert w(0) == 0.0 and w(10) == base(0) and w(60) == base(50)
    assert (base * 2)(0) == 0.2
    assert base.clamped(0.02)(99) == 0.02
    assert w.horizon == 110
