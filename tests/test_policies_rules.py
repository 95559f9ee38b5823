"""lrlab.policies: each trigger's rule on hand-made histories, with the pop epochs written out.

Pop epochs are 0-based indices into the metric list: the observation that made the policy advance.
"""

import json
import math

import pytest
import torch

import lrlab
from lrlab.errors import ConfigError
from lrlab.policies import Policy, PolicyState, convergence_epoch, replay
from lrlab.schedules import dump_config, load_config

NAN, INF = math.nan, math.inf
SEQ1 = {"type": "sequence", "kind": "seq1", "lr": 1.0}


def pops_of(config, metrics):
    return replay(lrlab.from_config(config), metrics).pop_epochs


def policy(trigger, **kw):
    if "factor" not in kw:
        kw.setdefault("values", SEQ1)
    return {"type": "policy", "trigger": trigger, **kw}


# ------------------------------------------------------------------------------------ registry


def test_policy_is_registered_on_import_lrlab():
    assert lrlab.policies is not None
    assert lrlab.schedules.REGISTRY["policy"] is Policy
    assert isinstance(lrlab.from_config(policy("epoch")), Policy)


# ------------------------------------------------------------------------------------ epoch


def test_epoch_pops_at_every_observation_including_the_first():
    assert pops_of(policy("epoch"), [5.0, 6.0, 7.0, 1.0]) == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------ cutoff

CUT_LOSSES = [1.0, 0.5, 0.495, 0.4, 0.399, 0.3985, 0.39849]


def test_cutoff_relative_rate_and_shrink():
    # c0 = 0.01 * 1.0; |0.495-0.5| = 0.005 < 0.01 -> pop, c = 0.002; |0.4-0.399| = 0.001 < 0.002
    # -> pop, c = 0.0004; |0.399-0.3985| = 0.0005 is not < 0.0004; 1e-5 < 0.0004 -> pop
    assert pops_of(policy("cutoff"), CUT_LOSSES) == [2, 4, 6]
    p = lrlab.from_config(policy("cutoff"))
    assert replay(p, CUT_LOSSES).state.trigger.cutoff == pytest.approx(0.01 * 0.2**3)


def test_cutoff_absolute_c0():
    # c0 = 0.1, shrink 0.5: 0.005 < 0.1 (c=.05), 0.095 no, 0.001 (c=.025), 0.0005 (c=.0125), 1e-5
    assert pops_of(policy("cutoff", cutoff=0.1, shrink=0.5), CUT_LOSSES) == [2, 4, 5, 6]


def test_cutoff_never_fires_on_the_first_loss_even_with_a_huge_cutoff():
    assert pops_of(policy("cutoff", cutoff=1e9), [1.0]) == []
    assert pops_of(policy("cutoff", cutoff=1e9), [1.0, 1.0]) == [1]


def test_cutoff_relative_to_a_negative_first_loss_uses_its_magnitude():
    # c0 = 0.1 * |-2| = 0.2
    assert pops_of(policy("cutoff", rate=0.1), [-2.0, -2.1, -3.0]) == [1]


# ------------------------------------------------------------------------------------ oscillation

OSC_LOSSES = [1.0, 0.9, 0.95, 0.8, 0.85, 0.86, 0.7]


def test_oscillation_pops_on_every_rise():
    assert pops_of(policy("oscillation"), OSC_LOSSES) == [2, 4, 5]


def test_oscillation_authors_bug_also_pops_after_the_first_epoch():
    assert pops_of(policy("oscillation", authors_bug=True), OSC_LOSSES) == [0, 2, 4, 5]
    # explicit false is the specified rule (and round-trips as written)
    cfg = policy("oscillation", authors_bug=False)
    assert pops_of(cfg, OSC_LOSSES) == [2, 4, 5]
    assert lrlab.from_config(cfg).to_config() == {
        **cfg,
        "values": {**SEQ1, "period": 1, "gamma": 0.9},
    }


def test_oscillation_margin_and_patience():
    assert pops_of(policy("oscillation", margin=0.02), OSC_LOSSES) == [2, 4]  # +0.01 is too small
    # patience 1: two rises in a row are needed (indices 4 and 5)
    assert pops_of(policy("oscillation", patience=1), OSC_LOSSES) == [5]
    assert pops_of(policy("oscillation", patience=1), [1, 2, 3, 4, 5]) == [2, 4]


def test_no_rule_fires_before_it_has_two_losses():
    for trigger in ("cutoff", "oscillation", "plateau"):
        assert (
            pops_of(policy(trigger, patience=0) if trigger == "plateau" else policy(trigger), [3.0])
            == []
        )


# ------------------------------------------------------------------------------------ plateau

PLATEAU_LOSSES = [1.0, 0.95, 0.95, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]


def test_plateau_patience_and_rel_threshold():
    # best 1.0; 0.95 is not < 0.9 -> bad 1, 2, 3 > 2 -> pop at 3; 0.8 improves; bad 1, 2, 3 -> pop at 7
    cfg = policy("plateau", patience=2, threshold=0.1)
    assert pops_of(cfg, PLATEAU_LOSSES) == [3, 7]


def test_plateau_cooldown():
    cfg = policy("plateau", patience=2, threshold=0.1, cooldown=2)
    assert pops_of(cfg, PLATEAU_LOSSES) == [3, 8]


def test_plateau_abs_threshold_and_max_mode():
    assert pops_of(
        policy("plateau", patience=1, threshold=0.5, threshold_mode="abs"),
        [1.0, 0.75, 0.5, 0.25, 0.125],
    ) == [2]  # 0.5 is not < 1.0 - 0.5; 0.25 is
    accuracy = [0.5, 0.6, 0.6, 0.6, 0.7, 0.65, 0.69]
    assert pops_of(policy("plateau", mode="max", patience=1, threshold=0.0), accuracy) == [3, 6]


def test_plateau_default_patience_is_ten():
    assert pops_of(policy("plateau"), [1.0] * 12) == [11]


def test_plateau_min_lr_floor_with_a_factor():
    cfg = {
        "type": "policy",
        "trigger": "plateau",
        "patience": 0,
        "factor": 0.5,
        "lr0": 1.0,
        "min_lr": 0.3,
    }
    r = replay(lrlab.from_config(cfg), [1.0, 1.0, 1.0, 1.0])
    assert r.lrs == [1.0, 1.0, 0.5, 0.3]
    assert r.final_lr == 0.3


def test_plateau_flat_negative_metric_regression():
    """ReduceLROnPlateau's rel mode compares with best * (1 - threshold): for a negative best that
    bar is *above* best, so a flat negative metric counts as improving forever and the rate never
    drops. lrlab uses best - threshold * |best|."""
    flat = [-1.0] * 8
    cfg = {"type": "policy", "trigger": "plateau", "patience": 2, "factor": 0.1, "lr0": 1.0}
    r = replay(lrlab.from_config(cfg), flat)
    assert r.pop_epochs == [3, 6]
    assert r.final_lr == pytest.approx(0.01)
    # the mirror image gives the same decisions in max mode, and a flat positive one in min mode
    assert pops_of({**cfg, "mode": "max"}, flat) == [3, 6]
    assert pops_of(cfg, [1.0] * 8) == [3, 6]
    assert pops_of({**cfg, "mode": "max"}, [-v for v in [-1.0] * 8]) == [3, 6]
    # a negative metric that keeps improving by more than the threshold never pops
    assert pops_of(cfg, [-1.0, -1.1, -1.2, -1.3, -1.4, -1.5]) == []
    # torch's own ReduceLROnPlateau on the same history, for reference (the known bug)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=2, factor=0.1)
    for v in flat:
        ref.step(v)
    print("torch ReduceLROnPlateau lr after a flat -1.0 history:", opt.param_groups[0]["lr"])


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
def test_plateau_matches_torch_reduce_lr_on_plateau_on_positive_metrics(mode, threshold_mode):
    g = torch.Generator().manual_seed(3)
    metrics = (1.0 + torch.rand(40, generator=g) * 0.2 - torch.arange(40) * 0.002).tolist()
    kw = dict(mode=mode, threshold=0.01, threshold_mode=threshold_mode, patience=2, cooldown=1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.9, **kw)
    ref_lrs = []
    for v in metrics:
        ref.step(v)
        ref_lrs.append(opt.param_groups[0]["lr"])
    cfg = {"type": "policy", "trigger": "plateau", "factor": 0.9, "lr0": 1.0, **kw}
    r = replay(lrlab.from_config(cfg), metrics)
    ours = r.lrs[1:] + [r.final_lr]  # the rate after each observation
    assert ours == pytest.approx(ref_lrs, rel=1e-12)
    assert r.pops > 0


# ------------------------------------------------------------------------------------ NaN / inf


def test_non_finite_metrics_are_ignored_and_counted():
    hist = [1.0, NAN, 0.9, INF, 0.95, -INF]
    p = lrlab.from_config(policy("oscillation"))
    r = replay(p, hist)
    assert r.pop_epochs == [4]  # 0.95 > 0.9: the NaN/inf never became "the previous loss"
    assert (r.state.observations, r.state.bad_metrics, r.state.trigger.last) == (3, 3, 0.95)


@pytest.mark.parametrize("trigger", ["epoch", "cutoff", "oscillation", "plateau"])
def test_a_non_finite_metric_leaves_the_state_unchanged_but_for_the_counter(trigger):
    p = lrlab.from_config(policy(trigger, patience=0) if trigger == "plateau" else policy(trigger))
    s = p.init()
    for v in (1.0, 0.999, 1.5):
        s = p.observe(s, v)
    for bad in (NAN, INF, -INF, torch.tensor(NAN)):
        s2 = p.observe(s, bad)
        assert s2 == PolicyState(**{**s.__dict__, "bad_metrics": s.bad_metrics + 1})
        assert p.value(s2, 7) == p.value(s, 7)


def test_first_metric_nan_does_not_poison_the_cutoff():
    assert pops_of(policy("cutoff"), [NAN, 1.0, 0.995]) == [2]
    p = lrlab.from_config(policy("cutoff"))
    assert replay(p, [NAN, 1.0]).state.trigger.cutoff == 0.01


def test_plateau_best_never_becomes_nan():
    p = lrlab.from_config(policy("plateau", patience=1))
    s = replay(p, [1.0, NAN, 2.0, NAN, 3.0]).state
    assert s.trigger.best == 1.0 and s.pops == 1 and s.bad_metrics == 2


# ------------------------------------------------------------------------------------ what advancing means


def test_sequence_values_on_their_own():
    cfg = policy("epoch", values={"type": "sequence", "kind": "seq4", "lr": 0.01})
    r = replay(lrlab.from_config(cfg), [1.0] * 21)
    seq = lrlab.from_config({"type": "sequence", "kind": "seq4", "lr": 0.01})
    assert r.lrs == [seq.value(i) for i in range(21)]
    assert r.final_lr == pytest.approx(0.01 / 3)  # pop #21 = r0 / 3


def test_a_sequence_that_runs_out_stays_at_its_last_value():
    cfg = policy("epoch", values={"type": "sequence", "kind": "seq1", "lr": 1.0, "length": 2})
    r = replay(lrlab.from_config(cfg), [1.0] * 6)
    assert r.lrs == [1.0, 0.5, 1 / 3, 1 / 3, 1 / 3, 1 / 3]
    assert r.pops == 6


def test_factor_on_its_own():
    cfg = {"type": "policy", "trigger": "oscillation", "factor": 0.5, "lr0": 0.2}
    r = replay(lrlab.from_config(cfg), OSC_LOSSES, steps_per_epoch=2)
    # pops after epochs 2, 4, 5: 0.2 for epochs 0-2, 0.1 for 3-4, 0.05 for 5, 0.025 for 6
    assert r.lrs == [0.2] * 6 + [0.1] * 4 + [0.05] * 2 + [0.025] * 2
    assert r.final_lr == 0.025


def test_cosine_times_decay_on_oscillation():
    cos = {"type": "cosine", "lr": 0.1, "total": 14}
    cfg = {"type": "policy", "trigger": "oscillation", "factor": 0.5, "schedule": cos}
    p = lrlab.from_config(cfg)
    r = replay(p, OSC_LOSSES, steps_per_epoch=2)
    c = lrlab.from_config(cos)
    pops = [0] * 6 + [1] * 4 + [2] * 2 + [3] * 2
    assert r.lrs == [c(t) * 0.5**k for t, k in enumerate(pops)]


def test_ralr_on_top_of_a_cutoff_policy():
    ralr = {
        "type": "ralr",
        "base": {"type": "constant", "lr": 1.0},
        "p": 0.5,
        "period": 3,
        "seed": 1,
    }
    seq = {"type": "sequence", "kind": "seq4", "lr": 0.01}
    cfg = {"type": "policy", "trigger": "cutoff", "values": seq, "schedule": ralr}
    p = lrlab.from_config(cfg)
    r = replay(p, CUT_LOSSES, steps_per_epoch=3)
    amp, s = lrlab.from_config(ralr), lrlab.from_config(seq)
    pops = [0] * 9 + [1] * 6 + [2] * 6  # pops after epochs 2, 4, 6
    assert r.lrs == pytest.approx(
        [amp(t) * s.value(k) / 0.01 for t, k in enumerate(pops)], rel=1e-15
    )
    assert (
        len({round(x / y, 12) for x, y in zip(r.lrs, [s.value(k) for k in pops])}) > 1
    )  # amplified


def test_values_can_be_any_schedule_evaluated_at_the_pop_count():
    ms = {"type": "multistep", "lr": 1.0, "milestones": [2], "gamma": 0.1}
    r = replay(lrlab.from_config(policy("epoch", values=ms)), [1.0] * 4)
    assert r.lrs == [1.0, 1.0, 0.1, 0.1]


# ------------------------------------------------------------------------------------ configs

CONFIGS = [
    {
        "type": "policy",
        "trigger": "epoch",
        "values": {"type": "sequence", "kind": "seq3", "lr": 0.01, "period": 1, "gamma": 0.9},
    },
    {
        "type": "policy",
        "trigger": "cutoff",
        "rate": 0.01,
        "shrink": 0.2,
        "values": {
            "type": "sequence",
            "kind": "seq4",
            "lr": 0.01,
            "period": 1,
            "gamma": 0.9,
            "length": 30,
        },
    },
    {"type": "policy", "trigger": "cutoff", "cutoff": 0.05, "factor": 0.5, "lr0": 0.1},
    {
        "type": "policy",
        "trigger": "oscillation",
        "margin": 0.01,
        "patience": 2,
        "authors_bug": True,
        "factor": 0.3,
        "schedule": {"type": "cosine", "lr": 0.1, "total": 100, "end_lr": 0.0},
        "min_lr": 1e-05,
    },
    {
        "type": "policy",
        "trigger": "plateau",
        "mode": "max",
        "threshold": 0.001,
        "threshold_mode": "abs",
        "patience": 3,
        "cooldown": 1,
        "min_lr": 0.0001,
        "factor": 0.1,
        "lr0": 0.1,
    },
]


NESTED = {
    "type": "policy",
    "trigger": {"type": "plateau", "mode": "max", "patience": 3, "eps": 0.0},
    "factor": 0.1,
    "lr0": 0.1,
}


def test_the_table_form_builds_the_same_policy_and_round_trips():
    flat = {"type": "policy", "trigger": "plateau", "mode": "max", "patience": 3, "eps": 0.0}
    flat.update(factor=0.1, lr0=0.1)
    assert lrlab.from_config(NESTED) == lrlab.from_config(flat)
    assert lrlab.from_config(NESTED).to_config() == NESTED
    assert lrlab.from_config(flat).to_config() == flat
    p = lrlab.from_config(NESTED)
    assert Policy(trigger=p.trigger, factor=0.1, lr0=0.1) == p
    assert (
        Policy(
            trigger={"type": "plateau", "mode": "max", "patience": 3, "eps": 0.0},
            factor=0.1,
            lr0=0.1,
        )
        == p
    )


@pytest.mark.parametrize("cfg", CONFIGS + [NESTED])
def test_config_round_trip_is_exact(cfg, tmp_path):
    p = lrlab.from_config(cfg)
    assert p.to_config() == cfg
    assert lrlab.from_config(json.loads(json.dumps(p.to_config()))) == p
    for name in ("p.json", "p.toml"):
        dump_config(p.to_config(), tmp_path / name)
        assert lrlab.from_config(load_config(tmp_path / name)) == p


def test_minimal_config_round_trips_without_adding_defaults():
    cfg = {"type": "policy", "trigger": "plateau", "factor": 0.5, "lr0": 0.1}
    assert lrlab.from_config(cfg).to_config() == cfg
    assert lrlab.from_config(cfg).trigger.patience == 10


@pytest.mark.parametrize(
    "cfg, words",
    [
        ({"trigger": "oscillate", "factor": 0.5, "lr0": 1}, ["policy.trigger", "oscillation"]),
        (
            {"trigger": "cutoff", "factor": 0.5, "lr0": 1, "mode": "min"},
            ["policy.mode", "plateau", "cutoff"],
        ),
        ({"trigger": "epoch", "factor": 0.5, "lr0": 1, "patience": 2}, ["policy.patience"]),
        (
            {"trigger": "plateau", "factor": 0.5, "lr0": 1, "authors_bug": True},
            ["authors_bug", "oscillation"],
        ),
        ({"trigger": "epoch"}, ["values", "factor"]),
        ({"trigger": "epoch", "factor": 0.5, "values": SEQ1}, ["exactly one"]),
        ({"trigger": "epoch", "factor": 0.5}, ["policy.lr0"]),
        ({"trigger": "epoch", "values": SEQ1, "lr0": 0.1}, ["policy.lr0"]),
        ({"trigger": "epoch", "factor": 1.5, "lr0": 1}, ["policy.factor", "<= 1"]),
        ({"trigger": "epoch", "factor": 0, "lr0": 1}, ["policy.factor"]),
        (
            {"trigger": "cutoff", "factor": 0.5, "lr0": 1, "rate": 0.1, "cutoff": 0.1},
            ["rate", "cutoff"],
        ),
        ({"trigger": "cutoff", "factor": 0.5, "lr0": 1, "shrink": 0}, ["policy.shrink"]),
        ({"trigger": "plateau", "factor": 0.5, "lr0": 1, "patience": -1}, ["policy.patience"]),
        (
            {"trigger": "plateau", "factor": 0.5, "lr0": 1, "mode": "minimum"},
            ["policy.mode", "min"],
        ),
        (
            {"trigger": "plateau", "factor": 0.5, "lr0": 1, "threshold_mode": "relative"},
            ["threshold_mode"],
        ),
        (
            {"trigger": "oscillation", "factor": 0.5, "lr0": 1, "authors_bug": "yes"},
            ["authors_bug"],
        ),
        ({"trigger": "oscillation", "factor": 0.5, "lr0": 1, "margin": -1}, ["policy.margin"]),
        (
            {
                "trigger": "epoch",
                "values": {"type": "sequence", "kind": "seq1", "lr": 0.0},
                "schedule": {"type": "constant", "lr": 1.0},
            },
            ["policy.values", "above 0"],
        ),
        ({"trigger": "epoch", "values": {"kind": "seq1"}}, ["type"]),
        ({"trigger": "epoch", "factor": 0.5, "lr0": 1, "min_lr": -1}, ["policy.min_lr"]),
        ({"trigger": "epoch", "factor": 0.5, "lr0": 1, "bogus": 1}, ["bogus"]),
        # the table form names the path inside it
        (
            {"trigger": {"type": "cutoff", "mode": "min"}, "factor": 0.5, "lr0": 1},
            ["policy.trigger.mode", "plateau", "cutoff"],
        ),
        (
            {"trigger": {"type": "plateau", "patience": -1}, "factor": 0.5, "lr0": 1},
            ["policy.trigger.patience", ">= 0"],
        ),
        (
            {"trigger": {"type": "plateau"}, "patience": 1, "factor": 0.5, "lr0": 1},
            ["policy.patience", "table"],
        ),
        ({"trigger": {"patience": 1}, "factor": 0.5, "lr0": 1}, ["policy.trigger", "'type'"]),
        ({"trigger": {"type": "plateaux"}, "factor": 0.5, "lr0": 1}, ["policy.trigger.type"]),
        ({"trigger": ["plateau"], "factor": 0.5, "lr0": 1}, ["policy.trigger"]),
        ({"factor": 0.5, "lr0": 1}, ["trigger"]),
        ({"trigger": "plateau", "factor": 0.5, "lr0": 1, "eps": -1}, ["policy.eps"]),
        ({"trigger": "plateau", "factor": 0.5, "lr0": 1, "patience": 2.5}, ["policy.patience"]),
        ({"trigger": "plateau", "factor": 0.5, "lr0": 1, "patience": True}, ["policy.patience"]),
    ],
)
def test_bad_configs_raise_config_error_naming_the_field(cfg, words):
    with pytest.raises(ConfigError) as info:
        lrlab.from_config({"type": "policy", **cfg})
    for w in words:
        assert w in str(info.value)


# ------------------------------------------------------------------------------------ state


def test_state_dict_round_trip_and_versioning():
    p = lrlab.from_config(CONFIGS[4])
    s = replay(p, [0.5, 0.6, 0.6, 0.6, 0.6, 0.61, 0.7, float("nan")]).state
    d = p.state_to_dict(s)
    assert d["version"] == 2 and d["trigger"]["type"] == "plateau" and d["trigger"]["version"] == 1
    assert json.loads(json.dumps(d)) == d
    assert p.state_from_dict(json.loads(json.dumps(d))) == s
    with pytest.raises(ConfigError, match="version 3"):
        p.state_from_dict({**d, "version": 3})
    with pytest.raises(ConfigError, match="version"):
        p.state_from_dict({k: v for k, v in d.items() if k != "version"})
    with pytest.raises(ConfigError, match="'cutoff' policy"):
        p.state_from_dict({**d, "trigger": {**d["trigger"], "type": "cutoff"}})
    with pytest.raises(ConfigError, match="unknown key"):
        p.state_from_dict({**d, "extra": 1})
    with pytest.raises(ConfigError, match="pops"):
        p.state_from_dict({**d, "pops": -1})
    with pytest.raises(ConfigError, match="trigger.best"):
        p.state_from_dict({**d, "trigger": {**d["trigger"], "best": "x"}})
    with pytest.raises(ConfigError, match="trigger.bad_epochs"):
        p.state_from_dict({**d, "trigger": {**d["trigger"], "bad_epochs": 1.5}})
    with pytest.raises(ConfigError, match="trigger.best"):
        p.state_from_dict({**d, "trigger": {**d["trigger"], "best": float("nan")}})
    with pytest.raises(ConfigError, match="missing"):
        p.state_from_dict({k: v for k, v in d.items() if k != "pops"})


def test_observe_is_pure():
    p = lrlab.from_config(CONFIGS[1])
    s0 = p.init()
    s1 = p.observe(s0, 1.0)
    s2 = p.observe(s1, 1.0)
    assert s0 == PolicyState(p.trigger.init()) and s1.pops == 0 and s2.pops == 1
    assert p.observe(s1, 1.0) == s2
    with pytest.raises(Exception):
        s2.pops = 5


# ------------------------------------------------------------------------------------ convergence epoch


def test_convergence_epoch_definition():
    # diffs: .3 .1 .05 .001 .001 .001 .001 .001 -> first window of 4 with sum < .009 starts at 3
    acc = [0.5, 0.8, 0.9, 0.95, 0.951, 0.952, 0.953, 0.954, 0.955]
    assert convergence_epoch(acc) == 3
    # a window needs window + 1 values; otherwise the run's length
    assert convergence_epoch([0.9, 0.9, 0.9, 0.9]) == 4
    assert convergence_epoch([0.9] * 5) == 0
    # the bound is strict
    assert convergence_epoch([0.0, 0.25, 0.5, 0.75, 0.75], tol=0.75) == 5
    assert convergence_epoch([0.0, 0.25, 0.5, 0.75, 0.75], tol=0.76) == 0
    # absolute values: oscillation counts
    assert convergence_epoch([0.9, 0.905, 0.9, 0.905, 0.9]) == 5
    assert convergence_epoch([0.5, 0.6, 0.6, 0.6], window=2) == 1
    with pytest.raises(ConfigError):
        convergence_epoch([0.5], window=0)
    with pytest.raises(ConfigError):
        convergence_epoch([0.5], tol=-1)
    assert lrlab.policies.convergence_epoch is convergence_epoch
