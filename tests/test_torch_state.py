"""Scheduler.load_state_dict: the whole dict is checked before anything is assigned.

A hypothesis test breaks a real state dict at every place (wrong types, negative, fractional,
huge and non-finite numbers, missing and extra keys, wrong lengths, a list for a dict) and loads
it: either a one-line ConfigError and the scheduler exactly as it was, or a load whose rates are
finite and >= 0. ``LRLAB_FUZZ_EXAMPLES=10000`` runs more examples.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from helpers import fuzz_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrlab.errors import ConfigError
from lrlab.torch import Scheduler

EXAMPLES = fuzz_examples(300)
PLATEAU = {"type": "policy", "trigger": "plateau", "patience": 1, "factor": 0.5, "lr0": 0.1}
CUTOFF = {
    "type": "policy",
    "trigger": {"type": "cutoff", "shrink": 0.5},
    "values": {"type": "sequence", "kind": "seq4", "lr": 0.01},
}
COSINE = {"type": "cosine", "lr": 0.95, "total": 50, "end_lr": 0.85}
BAD_VALUES = [
    -1,
    -0.5,
    1.5,
    2.5,
    math.nan,
    math.inf,
    -math.inf,
    10**400,
    1e300,
    2**60,
    "1",
    None,
    True,
    [],
    {},
    [1.0],
    {"version": 1},
]


def make():
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(2)]
    opt = torch.optim.SGD([{"params": [p]} for p in params], lr=0.1, momentum=0.9)
    return Scheduler(opt, lr=[PLATEAU, CUTOFF], momentum=COSINE, scales=[1.0, 0.5])


def trained():
    sched = make()
    for m in [1.0, 0.9, 0.95, 0.95, 0.94, 0.94]:
        for _ in range(3):
            sched.step()
        sched.step(m)
    return sched


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*prefix, i))


GOOD = trained().state_dict()
PATHS = [p for p in paths(GOOD) if p]


def mutate(state, path, op, value):
    if not path:
        return value
    parent = state
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "extra" and isinstance(parent, dict):
        parent["unexpected"] = value
    elif op == "extra" and isinstance(parent, list):
        parent.append(value)
    else:
        parent[last] = value
    return state


def snapshot(sched):
    groups = [(g["lr"], g["momentum"]) for g in sched.optimizer.param_groups]
    return sched.state_dict(), groups, sched.last_epoch, sched._step_count


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(PATHS),
    st.sampled_from(["replace", "replace", "delete", "extra"]),
    st.sampled_from(BAD_VALUES),
    st.integers(1, 2),
)
def test_a_broken_state_dict_is_refused_whole_or_loads_safely(path, op, value, depth):
    state = mutate(copy.deepcopy(GOOD), path[: max(1, len(path) - depth + 1)], op, value)
    sched = trained()
    sched.step()  # differs from GOOD, so a partial load would show
    before = snapshot(sched)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "saved with a different schedule" when configs change
        try:
            sched.load_state_dict(state)
        except ConfigError as exc:
            assert "\n" not in str(exc)
            assert snapshot(sched) == before
            return
    for lr, momentum in snapshot(sched)[1]:
        assert math.isfinite(lr) and lr >= 0 and math.isfinite(momentum) and momentum >= 0


@pytest.mark.parametrize("value", [[], "x", None, 3, [GOOD]])
def test_not_a_dict(value):
    sched = trained()
    before = snapshot(sched)
    with pytest.raises(ConfigError, match="state_dict"):
        sched.load_state_dict(value)
    assert snapshot(sched) == before


@pytest.mark.parametrize(
    "path, value, words",
    [
        (("step",), -1, ["state_dict.step", ">= 0"]),
        (("step",), 2.5, ["state_dict.step", "integer"]),
        (("step_count",), True, ["state_dict.step_count"]),
        (("scales",), [1.0], ["state_dict.scales", "2 to 2"]),
        (("scales", 1), math.nan, ["state_dict.scales[1]"]),
        (("scales", 0), -0.1, ["state_dict.scales[0]", ">= 0"]),
        (("scales", 0), 1e9, ["state_dict.scales[0]", "<= 1000000"]),
        (("hyperparams", "lr", "states", 0, "pops"), -1, ["states[0].pops"]),
        (("hyperparams", "lr", "states", 0, "trigger", "best"), math.nan, ["trigger.best"]),
        (("hyperparams", "lr", "states", 1, "trigger", "cutoff"), -0.1, ["trigger.cutoff"]),
        (("hyperparams", "lr", "states", 0), None, ["states[0]", "missing"]),
        (("hyperparams", "momentum", "states", 0), {"version": 2}, ["states[0]", "plain schedule"]),
        (("hyperparams", "lr", "groups"), [0, 0], ["groups"]),
        (("hyperparams", "lr", "states"), [None], ["states", "2 to 2"]),
        (("hyperparams", "momentum"), [], ["hyperparams.momentum", "dict"]),
    ],
)
def test_each_bad_field_is_named(path, value, words):
    sched = trained()
    before = snapshot(sched)
    with pytest.raises(ConfigError) as info:
        sched.load_state_dict(mutate(copy.deepcopy(GOOD), path, "replace", value))
    message = str(info.value)
    assert all(w in message for w in words), message
    assert snapshot(sched) == before


def test_missing_and_extra_keys():
    sched = trained()
    for key in ("step", "scales", "hyperparams", "format"):
        with pytest.raises(ConfigError, match=key if key != "format" else "format"):
            sched.load_state_dict({k: v for k, v in GOOD.items() if k != key})
    with pytest.raises(ConfigError, match="'weight_decay'"):
        sched.load_state_dict({**GOOD, "hyperparams": {**GOOD["hyperparams"], "weight_decay": {}}})
    with pytest.raises(ConfigError, match="momentum"):
        sched.load_state_dict({**GOOD, "hyperparams": {"lr": GOOD["hyperparams"]["lr"]}})


def test_a_good_state_loads_exactly():
    sched = make()
    sched.load_state_dict(copy.deepcopy(GOOD))
    assert sched.state_dict() == GOOD
