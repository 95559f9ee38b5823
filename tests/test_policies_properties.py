"""Property tests for policies: pure decay never rises, pops never exceed observations, replays are
deterministic, a state saved at any point continues identically, configs round-trip."""

import json
import math

from helpers import fuzz_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lrlab
from lrlab.errors import ConfigError
from lrlab.policies import TRIGGERS, replay

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
metric = st.one_of(finite, finite, finite, finite, st.sampled_from([math.nan, math.inf, -math.inf]))
histories = st.lists(metric, max_size=40)


@st.composite
def trigger_keys(draw):
    trigger = draw(st.sampled_from(list(TRIGGERS)))
    keys = {"trigger": trigger}
    pos = st.floats(min_value=1e-6, max_value=10.0)
    if trigger == "cutoff":
        if draw(st.booleans()):
            keys["cutoff"] = draw(pos)
        else:
            keys["rate"] = draw(st.floats(min_value=1e-4, max_value=1.0))
        keys["shrink"] = draw(st.floats(min_value=0.01, max_value=1.0))
    elif trigger == "oscillation":
        keys["margin"] = draw(st.sampled_from([0.0, 0.01, 1.0]))
        keys["patience"] = draw(st.integers(0, 3))
        keys["authors_bug"] = draw(st.booleans())
    elif trigger == "plateau":
        keys["mode"] = draw(st.sampled_from(["min", "max"]))
        keys["threshold_mode"] = draw(st.sampled_from(["rel", "abs"]))
        keys["threshold"] = draw(st.sampled_from([0.0, 1e-4, 0.1]))
        keys["patience"] = draw(st.integers(0, 4))
        keys["cooldown"] = draw(st.integers(0, 3))
    return keys


@st.composite
def decay_policies(draw):
    """Policies whose rate can only go down: seq1-3 / geometric values, or a factor <= 1."""
    keys = draw(trigger_keys())
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["seq1", "seq2", "seq3", "geometric"]))
        values = {"type": "sequence", "kind": kind, "lr": draw(st.floats(1e-4, 1.0))}
        if draw(st.booleans()):
            values["length"] = draw(st.integers(0, 5))
        keys["values"] = values
    else:
        keys["factor"] = draw(st.floats(min_value=0.01, max_value=1.0))
        keys["lr0"] = draw(st.floats(1e-4, 1.0))
    if draw(st.booleans()):
        keys["min_lr"] = draw(st.floats(0.0, 1e-3))
    return {"type": "policy", **keys}


@st.composite
def any_policies(draw):
    cfg = draw(decay_policies())
    if "values" in cfg and draw(st.booleans()):
        cfg["values"]["kind"] = "seq4"
    if draw(st.booleans()):
        cfg.pop("lr0", None)
        cfg["schedule"] = {"type": "cosine", "lr": 0.1, "total": 50}
    return cfg


@SETTINGS
@given(decay_policies(), histories, st.integers(1, 3))
def test_pure_decay_policies_never_raise_the_rate(cfg, metrics, spe):
    r = replay(lrlab.from_config(cfg), metrics, spe)
    lrs = r.lrs + [r.final_lr]
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))
    assert all(x >= 0 and math.isfinite(x) for x in lrs)


@SETTINGS
@given(any_policies(), histories)
def test_pops_never_exceed_observations(cfg, metrics):
    p = lrlab.from_config(cfg)
    r = replay(p, metrics)
    finite_count = sum(math.isfinite(m) for m in metrics)
    assert r.state.pops == r.pops <= r.state.observations == finite_count
    assert r.state.bad_metrics == len(metrics) - finite_count
    assert r.pop_epochs == sorted(r.pop_epochs) and len(set(r.pop_epochs)) == len(r.pop_epochs)
    assert all(math.isfinite(metrics[i]) for i in r.pop_epochs)
    if cfg["trigger"] == "epoch":
        assert r.pops == finite_count
    if cfg["trigger"] in ("cutoff", "oscillation") and not cfg.get("authors_bug"):
        assert r.pops <= max(finite_count - 1, 0)
    if cfg["trigger"] == "plateau":
        assert r.pops <= finite_count // (cfg["patience"] + 1)


@SETTINGS
@given(any_policies(), histories, st.integers(1, 3))
def test_replay_is_deterministic_and_config_round_trips(cfg, metrics, spe):
    p = lrlab.from_config(cfg)
    assert p.to_config() == lrlab.from_config(json.loads(json.dumps(p.to_config()))).to_config()
    q = lrlab.from_config(json.loads(json.dumps(cfg)))
    assert q == p
    a, b = replay(p, metrics, spe), replay(q, list(metrics), spe)
    assert a == b


@SETTINGS
@given(any_policies(), histories, st.data())
def test_saving_the_state_anywhere_continues_identically(cfg, metrics, data):
    p = lrlab.from_config(cfg)
    cut = data.draw(st.integers(0, len(metrics)))
    s = p.init()
    for m in metrics[:cut]:
        s = p.observe(s, m)
    restored = p.state_from_dict(json.loads(json.dumps(p.state_to_dict(s))))
    assert restored == s
    for m in metrics[cut:]:
        s, restored = p.observe(s, m), p.observe(restored, m)
    assert restored == s and p.value(restored, 7) == p.value(s, 7)
    assert restored == replay(p, metrics).state


# ------------------------------------------------------------------------------------ bad input

JUNK = st.sampled_from(
    [-1, -0.5, 0, 0.5, 1.5, 2, 10**400, 1e308, math.nan, math.inf, "1", "min", True, None, [], {}]
    + [[1, 2], {"type": "plateau"}, {"type": ["x"]}, {"type": "cosine", "lr": 1, "total": 5}]
)
TRIGGER_KEY_NAMES = sorted(
    {f.name for t in TRIGGERS.values() for f in t._fields()} | {"type", "bogus"}
)
POLICY_KEY_NAMES = ["trigger", "values", "factor", "lr0", "schedule", "min_lr", "bogus"]


@st.composite
def broken_policies(draw):
    """A valid policy config with a few of its keys (flat, in the trigger table, or the policy's
    own) replaced by junk, or the trigger replaced by a junk table or a deep nest."""
    cfg = draw(any_policies())
    if draw(st.booleans()):  # the table form
        keys = {k: cfg.pop(k) for k in list(cfg) if k in TRIGGER_KEY_NAMES}
        cfg["trigger"] = {"type": cfg["trigger"], **keys}
    for _ in range(draw(st.integers(1, 3))):
        place = draw(st.sampled_from(["policy", "trigger", "nest"]))
        if place == "policy":
            # (not the policy's own "type": from_config's, tested with the schedules)
            keys = POLICY_KEY_NAMES + [k for k in TRIGGER_KEY_NAMES if k != "type"]
            cfg[draw(st.sampled_from(keys))] = draw(JUNK)
        elif place == "trigger" and isinstance(cfg.get("trigger"), dict):
            cfg["trigger"][draw(st.sampled_from(TRIGGER_KEY_NAMES))] = draw(JUNK)
        else:
            deep = draw(JUNK)
            for _ in range(draw(st.integers(1, 300))):
                deep = {"type": "plateau", "mode": deep}
            cfg["trigger"] = deep
    return cfg


@settings(
    max_examples=fuzz_examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(broken_policies(), histories)
def test_a_broken_policy_config_is_one_line_or_gives_sane_rates(cfg, metrics):
    try:
        p = lrlab.from_config(cfg)
    except ConfigError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600
        return
    r = replay(p, metrics, 2)
    assert all(math.isfinite(x) and x >= 0 for x in r.lrs + [r.final_lr])
    assert lrlab.from_config(json.loads(json.dumps(p.to_config()))) == p
