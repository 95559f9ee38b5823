"""Hostile configs: one-line ConfigErrors naming the full field path, never a crash, and no
accepted config that yields a negative, NaN or infinite rate anywhere in its domain."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import fuzz_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrlab.errors import ConfigError
from lrlab.schedules import EXAMPLES, REGISTRY, Schedule, from_config, load_config
from lrlab.schedules.base import MAX_STEP

COSINE = {"type": "cosine", "lr": 0.1, "total": 10}
HUGE_INT = 10**400


def error(config) -> str:
    with pytest.raises(ConfigError) as info:
        from_config(config)
    message = str(info.value)
    assert "\n" not in message and len(message) < 1000
    return message


@pytest.mark.parametrize(
    "config,fragment",
    [
        (
            {"type": "multistep", "lr": 0.1, "milestones": "12"},
            "multistep.milestones must be a list",
        ),
        (
            {"type": "multistep", "lr": 0.1, "milestones": [1.7, 2.2]},
            "multistep.milestones[0] must be an integer",
        ),
        (
            {"type": "multistep", "lr": 0.1, "milestones": [True, 2]},
            "multistep.milestones[0] must be an integer",
        ),
        (
            {"type": "multistep", "lr": 0.1, "milestones": [1, math.inf]},
            "multistep.milestones[1] must be an integer",
        ),
        ({"type": "join", "schedules": [COSINE], "boundaries": [math.inf]}, "join.boundaries[0]"),
        ({"type": "join", "schedules": COSINE, "boundaries": []}, "join.schedules must be a list"),
        ({"type": "join", "schedules": "abc", "boundaries": []}, "join.schedules must be a list"),
        (
            {"type": "join", "schedules": [], "boundaries": []},
            "join.schedules must be a list of at least 1",
        ),
        (
            {"type": "join", "schedules": [COSINE, 3], "boundaries": [2]},
            "join.schedules[1] must be a schedule",
        ),
        (
            {
                "type": "join",
                "schedules": [COSINE, {"type": "cosine", "lr": -1, "total": 3}],
                "boundaries": [2],
            },
            "join.schedules[1].lr must be a finite number >= 0",
        ),
        (
            {"type": "warmup", "steps": 3, "base": {"type": "cosinee"}},
            "warmup.base.type: unknown schedule type 'cosinee' (did you mean 'cosine'?)",
        ),
        (
            {"type": "warmup", "steps": 3, "base": {"lr": 1}},
            "warmup.base: config has no 'type' key",
        ),
        (
            {"type": "warmup", "steps": 3, "base": {"type": "cosine", "lr": 0.1}},
            "warmup.base: missing required key(s) 'total'",
        ),
        (
            {
                "type": "warmup",
                "steps": 3,
                "base": {"type": "cosine", "lr": 0.1, "total": 5, "x": 1},
            },
            "warmup.base: unknown key for 'cosine' 'x'",
        ),
        (
            {"type": "ralr", "base": {"type": "warmup", "steps": 2.5, "base": COSINE}},
            "ralr.base.steps must be an integer >= 1",
        ),
        ({"type": ["cosine"], "lr": 0.1}, "unknown schedule type"),
        ({"type": {"a": 1}, "lr": 0.1}, "unknown schedule type"),
        ({"type": "cosine", "lr": HUGE_INT, "total": 10}, "cosine.lr must be a finite number"),
        (
            {"type": "cosine", "lr": 0.1, "total": HUGE_INT},
            "cosine.total must be an integer >= 1 <= 2**53",
        ),
        ({"type": "step", "lr": 0.1, "step_size": 10, "gamma": -HUGE_INT}, "step.gamma"),
        ({"type": "ralr", "base": COSINE, "seed": HUGE_INT}, "ralr.seed"),
        ({"type": "cosine", "lr": math.nan, "total": 10}, "cosine.lr must be a finite number"),
        ({"type": "cosine", "lr": True, "total": 10}, "cosine.lr must be a finite number"),
        (
            {"type": "cyclic", "base_lr": 0.1, "max_lr": 1, "mode": ["x"]},
            "cyclic.mode must be one of",
        ),
        ("cosine", "must be a dict with a 'type' key"),
    ],
)
def test_bad_input_is_one_line_naming_the_full_path(config, fragment):
    assert fragment in error(config)


def nested_warmups(depth: int) -> dict:
    config = {"type": "constant", "lr": 0.1}
    for _ in range(depth):
        config = {"type": "warmup", "steps": 2, "base": config}
    return config


def test_configs_nested_thousands_deep_are_one_line_errors(tmp_path):
    deep = nested_warmups(5000)
    assert "nested deeper than" in error(deep)
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config("{" + '"a": ' + text + "}")
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(nested_warmups(60))[:-1] + "x")
    with pytest.raises(ConfigError, match="deep.json"):
        load_config(path)


def test_load_config_result_must_be_a_table(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="list.json must be a table"):
        load_config(path)


# ------------------------------------------------------------------------- saturation


@pytest.mark.parametrize(
    "config",
    [
        {"type": "scale", "factor": 1e308, "base": {"type": "constant", "lr": 1e308}},
        {"type": "ralr", "base": {"type": "constant", "lr": 1e300}, "p": 1.0, "high": 1e308},
        {"type": "exponential", "lr": 1e300, "gamma": 1.5},
        {"type": "step", "lr": 0.0, "step_size": 1, "gamma": 10.0},
        {"type": "multistep", "lr": 1.0, "milestones": [1] * 400, "gamma": 1e10},
        {"type": "chain", "schedules": [{"type": "constant", "lr": 1e300}] * 3},
        # found by the fuzzer: (lr - end_lr) * (1 + cos) overflowed to -inf
        {"type": "cosine", "lr": 0.1, "end_lr": 8.98846567431158e307, "total": 200},
        {
            "type": "cosine_restarts",
            "lr": 1.7e308,
            "end_lr": 0.0,
            "period": 3,
            "restart_decay": 0.5,
        },
        {
            "type": "kdecay",
            "form": "additive",
            "k": 2.0,
            "base": {"type": "polynomial", "lr": 1.7e308, "total": 10},
        },
    ],
)
def test_overflowing_configs_saturate_at_the_largest_float(config):
    s = from_config(config)
    steps = np.array([0.0, 1.0, 5.0, 1e6, 1e15, float(MAX_STEP)])
    values = s.values(steps)
    assert np.isfinite(values).all() and (values >= 0).all()
    assert all(math.isfinite(s(t)) and s(t) >= 0 for t in steps)


def test_kdecay_additive_domain():
    cosine = {"type": "cosine", "lr": 0.1, "total": 100}
    message = error({"type": "kdecay", "base": cosine, "k": 0.5, "form": "additive"})
    assert "kdecay.k must be >= 1 with form 'additive'" in message
    rising = {"type": "linear", "lr": 0.1, "start_factor": 0.1, "total_iters": 100}
    message = error({"type": "kdecay", "base": rising, "k": 2.0, "form": "additive"})
    assert "kdecay.base must not end above where it starts" in message
    # the case: k = 0.5 over cosine went to -0.0024 at step 90; k < 1 warps fine
    warp = from_config({"type": "kdecay", "base": cosine, "k": 0.5, "form": "warp"})
    assert warp.values(200).min() >= 0


@pytest.mark.parametrize("k", [1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 8.0])
def test_kdecay_additive_over_cosine_stays_within_methods_bounds(k):
    """Never below the base (so never negative), never above base + (eta0 - eta_e) * excess."""
    from lrlab.schedules.kdecay import additive_excess

    base = from_config({"type": "cosine", "lr": 0.1, "end_lr": 0.001, "total": 1000})
    s = from_config({"type": "kdecay", "base": base.to_config(), "k": k, "form": "additive"})
    v, b = s.values(1200), base.values(1200)
    assert (v >= b).all() and (v >= 0).all()
    assert (v <= b + (0.1 - 0.001) * additive_excess(k) * (1 + 1e-12)).all()
    x = np.arange(1001) / 1000
    np.testing.assert_allclose(v[:1001], b[:1001] + 0.099 * (x - x**k), rtol=1e-12, atol=1e-16)


# -------------------------------------------------------------------------- nesting cost


class CountingConstant(Schedule):
    """A leaf that counts its evaluations (not registered: built directly)."""

    type_name = "counting"

    def __init__(self):
        self.calls = 0

    def evaluate(self, t, ops):
        self.calls += 1
        return 0.1 + 0.0 * t


@pytest.mark.parametrize("kind", ["warmup", "kdecay", "join", "scale", "chain"])
def test_evaluation_cost_is_linear_in_nesting_depth(kind):
    from lrlab.schedules import Chain, Constant, Join, KDecay, Scale, Warmup

    leaf = CountingConstant()
    schedule: Schedule = leaf
    depth = 50
    for _ in range(depth):
        schedule = {
            "warmup": lambda s: Warmup(base=s, steps=3),
            "kdecay": lambda s: KDecay(base=s, k=2.0, form="additive", total=100),
            "join": lambda s: Join(schedules=(Constant(lr=0.2), s), boundaries=(5,)),
            "scale": lambda s: Scale(base=s, factor=1.0),
            "chain": lambda s: Chain(schedules=(s,)),
        }[kind](schedule)
    built = leaf.calls
    assert built <= 2 * depth  # construction: each level reads its base at most twice
    for t in (0, 7, 500):
        leaf.calls = 0
        schedule(t)
        assert leaf.calls <= 1, (kind, t, leaf.calls)  # the scalar path: one leaf call
    leaf.calls = 0
    schedule.values(np.arange(1000))
    # arrays: each level evaluates each child once
    assert leaf.calls <= 1


def test_a_50_deep_nested_warmup_from_config_evaluates_one_leaf_per_call():
    s = from_config(nested_warmups(50))
    assert s(10**6) == 0.1 and s(0) == 0.0
    assert s.values(np.array([0.0, 50.0, 101.0, 1e6])).tolist()[-1] == 0.1


# --------------------------------------------------------------------------------- fuzzing

FUZZ_EXAMPLES = fuzz_examples(200)
FUZZ_STEPS = np.array(
    [0.0, 1.0, 2.0, 3.0, 7.0, 99.0, 1000.0, 12345.0, 1e6, 1e9, 1e15, float(MAX_STEP)]
)

numbers = st.one_of(
    st.integers(-5, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [0, 1, 2, 0.5, 1.0, 0.999, 1.001, 1e308, -1e308, 10**400, -(10**400), 2**53, 2**64]
    ),
)
scalars = st.one_of(numbers, st.booleans(), st.text(max_size=4), st.none())
FIELDS = sorted(
    {
        f
        for cls in REGISTRY.values()
        for f in getattr(cls, "__dataclass_fields__", {})
        if not f.startswith("_")
    }
)


def _grammar(children):
    """A config of any registered type whose fields are anything (usually well-typed)."""

    @st.composite
    def config(draw):
        name = draw(
            st.one_of(st.sampled_from(sorted(EXAMPLES)), st.sampled_from(["policy", "nope", ""]))
        )
        base = dict(EXAMPLES.get(name, {"type": name}))
        cls = REGISTRY.get(name)
        own = sorted(f for f in getattr(cls, "__dataclass_fields__", {}) if not f.startswith("_"))
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.sampled_from(own if own and draw(st.integers(0, 5)) else FIELDS))
            kind = draw(st.integers(0, 5))
            if kind <= 2:  # mostly a number, of any size, or a nested config
                base[key] = draw(numbers if kind < 2 else children)
            else:
                base[key] = draw(
                    st.one_of(scalars, st.lists(st.one_of(numbers, children), max_size=3))
                )
        if draw(st.integers(0, 9)) == 0:
            base["type"] = draw(
                st.one_of(
                    scalars,
                    st.lists(scalars, max_size=2),
                    st.dictionaries(st.text(max_size=2), scalars, max_size=2),
                )
            )
        return base

    return config()


configs = st.recursive(st.sampled_from(list(EXAMPLES.values())), _grammar, max_leaves=12)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(configs)
def test_fuzzed_configs_raise_config_error_or_give_finite_non_negative_rates(config):
    try:
        schedule = from_config(config)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    if not isinstance(schedule, Schedule):
        return  # a policy: its own helper fuzzes it
    values = schedule.values(FUZZ_STEPS)
    assert np.isfinite(values).all() and (values >= 0).all(), (config, values)
    for t in FUZZ_STEPS:
        value = schedule(t)
        assert math.isfinite(value) and value >= 0, (config, t, value)
    assert from_config(schedule.to_config()) == schedule
