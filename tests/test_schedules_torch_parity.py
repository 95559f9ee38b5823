"""The new types against the real torch (and transformers) over random configurations, and
against the test vectors torch's own scheduler tests and docs use."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from helpers import assert_rel, torch_values

from lrlab.errors import ConfigError
from lrlab.schedules import (
    Chain,
    ConstantFactor,
    Exponential,
    InverseSqrt,
    Linear,
    OneCycle,
    OneCycleMomentum,
    WarmupStableDecay,
    from_config,
    from_function,
)

LONG = 100_000


# ---------------------------------------------------------------------------------- onecycle


def test_onecycle_torch_test_vectors_linear():
    """torch's test_onecycle_lr_linear_annealing / _three_phase vectors."""
    lr = OneCycle(max_lr=25, total_steps=10, anneal_strategy="linear", final_div_factor=2)
    assert [lr(t) for t in range(10)] == pytest.approx([1, 13, 25, 21.5, 18, 14.5, 11, 7.5, 4, 0.5])
    m = OneCycleMomentum(total_steps=10, anneal_strategy="linear", base_momentum=1, max_momentum=22)
    assert [m(t) for t in range(10)] == pytest.approx([22, 11.5, 1, 4, 7, 10, 13, 16, 19, 22])
    kw = {"total_steps": 10, "anneal_strategy": "linear", "pct_start": 0.4, "three_phase": True}
    lr3 = OneCycle(max_lr=25, final_div_factor=4, **kw)
    expected = [1, 9, 17, 25, 17, 9, 1, 0.75, 0.5, 0.25]
    assert [lr3(t) for t in range(10)] == pytest.approx(expected)
    m3 = OneCycleMomentum(base_momentum=1, max_momentum=22, **kw)
    assert [m3(t) for t in range(10)] == pytest.approx([22, 15, 8, 1, 8, 15, 22, 22, 22, 22])


def test_onecycle_torch_test_vector_cosine():
    def cos(start, end, pct):
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    lr = OneCycle(max_lr=25, total_steps=10, final_div_factor=2)
    expected = [1, 13, 25, *(cos(25, 0.5, i / 7.0) for i in range(1, 8))]
    assert [lr(t) for t in range(10)] == pytest.approx(expected, rel=1e-15)


def random_onecycle(rng: random.Random, total: int) -> dict:
    three = rng.random() < 0.5
    return {
        "total_steps": total,
        "pct_start": rng.uniform(0.05, 0.45 if three else 0.95),
        "anneal_strategy": rng.choice(["cos", "linear"]),
        "three_phase": three,
    }


@pytest.mark.parametrize("seed", range(4))
def test_onecycle_lr_and_momentum_equal_torch_over_100k_steps(seed):
    rng = random.Random(seed)
    shape = random_onecycle(rng, LONG)
    lr = {"max_lr": rng.uniform(0.01, 2), "div_factor": rng.uniform(2, 50)}
    lr["final_div_factor"] = rng.uniform(10, 1e5)
    mom = {"base_momentum": rng.uniform(0.5, 0.85), "max_momentum": rng.uniform(0.86, 0.99)}

    def make(opt):
        return torch.optim.lr_scheduler.OneCycleLR(opt, **lr, **mom, **shape)

    ours, ours_m = OneCycle(**lr, **shape), OneCycleMomentum(**mom, **shape)
    # the arithmetic is torch's, in its order: equal to float64 rounding
    lrs, momenta = torch_values(make, LONG, key=("lr", "momentum"))
    assert_rel(ours.values(LONG), lrs, 1e-12)
    assert_rel(ours_m.values(LONG), momenta, 1e-12)
    sample = range(0, LONG, 9973)
    assert_rel([ours(t) for t in sample], ours.values(np.array(sample)), 1e-15)


@pytest.mark.parametrize("seed", range(30))
def test_onecycle_equals_torch_on_short_random_configs(seed):
    rng = random.Random(100 + seed)
    shape = random_onecycle(rng, rng.randint(20, 3000))
    kw = {"max_lr": rng.uniform(0.001, 5), "div_factor": rng.uniform(1.5, 100)}
    steps = shape["total_steps"]
    expected = torch_values(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, **kw, **shape), steps)
    assert_rel(OneCycle(**kw, **shape).values(steps), expected, 1e-12)


def test_onecycle_holds_its_final_value_after_total_steps():
    s = OneCycle(max_lr=1.0, total_steps=100)
    assert s(99) == s(100) == s(10**9) == pytest.approx(1.0 / 25 / 1e4)


@pytest.mark.parametrize(
    "config,fragment",
    [
        ({"pct_start": 0.05, "total_steps": 10}, "onecycle.pct_start must be in (1 / total_steps"),
        ({"pct_start": 1.0, "total_steps": 10}, "every phase has a length"),
        ({"pct_start": 0.6, "total_steps": 10, "three_phase": True}, "pct_start must be in"),
        ({"anneal_strategy": "cosine"}, "onecycle.anneal_strategy"),
        ({"three_phase": 1}, "onecycle.three_phase must be true or false"),
        ({"div_factor": 0}, "onecycle.div_factor must be a finite number > 0"),
    ],
)
def test_onecycle_rejects_configs_torch_would_divide_by_zero_on(config, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        from_config({"type": "onecycle", "max_lr": 0.1, "total_steps": 100, **config})


# ------------------------------------------------------------------- LinearLR and ConstantLR


def test_linear_and_constant_factor_torch_doc_vectors():
    linear = Linear(lr=0.05, start_factor=0.5, total_iters=4)
    assert [linear(t) for t in range(6)] == pytest.approx(
        [0.025, 0.03125, 0.0375, 0.04375, 0.05, 0.05]
    )
    const = ConstantFactor(lr=0.05, factor=0.5, total_iters=4)
    assert [const(t) for t in range(6)] == pytest.approx([0.025] * 4 + [0.05] * 2, rel=1e-15)


@pytest.mark.parametrize("seed", range(6))
def test_linear_equals_torch_linearlr(seed):
    rng = random.Random(seed)
    kw = {"start_factor": rng.uniform(0.01, 1), "end_factor": rng.uniform(0, 1)}
    kw["total_iters"] = rng.randint(1, 2000)
    steps = LONG if seed == 0 else 5000
    expected = torch_values(lambda o: torch.optim.lr_scheduler.LinearLR(o, **kw), steps, lr=0.3)
    # torch multiplies step by step (its recursive form): its rounding, about 1e-16 per step
    assert_rel(Linear(lr=0.3, **kw).values(steps), expected, 1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_constant_factor_equals_torch_constantlr(seed):
    rng = random.Random(seed)
    kw = {"factor": rng.uniform(0.01, 1), "total_iters": rng.randint(0, 2000)}
    steps = LONG if seed == 0 else 5000
    expected = torch_values(lambda o: torch.optim.lr_scheduler.ConstantLR(o, **kw), steps, lr=0.3)
    assert_rel(ConstantFactor(lr=0.3, **kw).values(steps), expected, 1e-12)


# ---------------------------------------------------------------------- ChainedScheduler


def test_chain_torch_doc_example():
    """torch's ChainedScheduler docstring example: ConstantLR(0.1, 2) and ExponentialLR(0.9),
    lr 1. (The docstring's table is shifted: real torch gives these values, as lrlab does.)"""
    c = Chain(
        schedules=(
            ConstantFactor(lr=1.0, factor=0.1, total_iters=2),
            Exponential(lr=1.0, gamma=0.9),
        )
    )
    expected = [0.1, 0.09, 0.81, 0.729, 0.6561]
    assert [c(t) for t in range(5)] == pytest.approx(expected, rel=1e-15)

    def make(opt):
        return torch.optim.lr_scheduler.ChainedScheduler(
            [
                torch.optim.lr_scheduler.ConstantLR(opt, factor=0.1, total_iters=2),
                torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9),
            ]
        )

    assert torch_values(make, 5).tolist() == pytest.approx(expected, rel=1e-15)


def test_chain_equals_torch_chained_scheduler():
    def make(opt):
        return torch.optim.lr_scheduler.ChainedScheduler(
            [
                torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=500),
                torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9999),
                torch.optim.lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=300),
            ]
        )

    ours = Chain(
        schedules=(
            Linear(lr=0.2, start_factor=0.1, total_iters=500),
            Exponential(lr=1.0, gamma=0.9999),
            ConstantFactor(lr=1.0, factor=0.5, total_iters=300),
        )
    )
    steps = 20_000
    # torch's recursive product rounds once per step; the closed form does not
    assert_rel(ours.values(steps), torch_values(make, steps, lr=0.2), 1e-11)


# ---------------------------------------------------------------- LambdaLR, MultiplicativeLR


def test_from_function_equals_lambdalr_and_multiplicativelr():
    fn = lambda t: 0.95 ** (t // 3) * (1 + (t % 7) / 10)
    steps = 5000
    expected = torch_values(lambda o: torch.optim.lr_scheduler.LambdaLR(o, fn), steps, lr=0.2)
    s = from_function(fn, lr=0.2)
    assert_rel(s.values(steps), expected, 1e-15)
    assert_rel([s(t) for t in range(steps)], expected, 1e-15)
    mult = lambda t: 0.9995 if t % 2 else 1.0001
    expected = torch_values(
        lambda o: torch.optim.lr_scheduler.MultiplicativeLR(o, mult), steps, lr=0.2
    )
    m = from_function(mult, lr=0.2, multiplicative=True)
    assert_rel(m.values(steps), expected, 1e-13)


def test_from_function_has_no_config_and_is_not_exportable():
    s = from_function(lambda t: 1.0)
    with pytest.raises(ConfigError, match="has no config: it wraps a Python callable"):
        s.to_config()
    from lrlab.export import as_exportable

    with pytest.raises(ConfigError, match="cannot be exported"):
        as_exportable(s)


def test_from_function_rejects_a_negative_or_nan_value_in_one_line():
    with pytest.raises(ConfigError, match=r"fn\(3\) returned -1"):
        from_function(lambda t: -1.0 if t == 3 else 1.0)(3)
    with pytest.raises(ConfigError, match="finite number >= 0"):
        from_function(lambda t: float("nan"))(0)
    with pytest.raises(ConfigError, match="must be callable"):
        from_function(3)


# ------------------------------------------------------------------- transformers' schedules


@pytest.fixture(scope="module")
def optimization():
    return pytest.importorskip("transformers.optimization")


@pytest.mark.integration  # transformers (HF)
@pytest.mark.parametrize("warmup,timescale", [(1, None), (100, None), (4000, None), (500, 2000)])
def test_inverse_sqrt_equals_transformers(optimization, warmup, timescale):
    def make(opt):
        return optimization.get_inverse_sqrt_schedule(
            opt, num_warmup_steps=warmup, timescale=timescale
        )

    expected = torch_values(make, LONG, lr=0.3)
    assert_rel(
        InverseSqrt(lr=0.3, warmup_steps=warmup, timescale=timescale).values(LONG), expected, 1e-12
    )


def test_inverse_sqrt_is_fairseqs_formula():
    # fairseq: warmup_init_lr + t * (lr - warmup_init_lr) / W, then lr * sqrt(W) * t ** -0.5
    s = InverseSqrt(lr=5e-4, warmup_steps=4000, warmup_init_lr=1e-7)
    for t in (0, 1, 1999, 3999, 4000, 4001, 10**5, 10**7):
        expected = 1e-7 + t * (5e-4 - 1e-7) / 4000 if t < 4000 else 5e-4 * 4000**0.5 * t**-0.5
        assert s(t) == pytest.approx(expected, rel=1e-14)


@pytest.mark.integration  # transformers (HF)
@pytest.mark.parametrize("decay", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize(
    "warmup,decay_steps,ratio", [(0, 20_000, 0.0), (2000, 30_000, 0.1), (500, 100_000 - 500, 0.01)]
)
def test_wsd_equals_transformers(optimization, decay, warmup, decay_steps, ratio):
    lr, total = 0.3, LONG

    def make(opt):
        return optimization.get_wsd_schedule(
            opt,
            num_warmup_steps=warmup,
            num_decay_steps=decay_steps,
            num_training_steps=total,
            decay_type=decay,
            min_lr_ratio=ratio,
        )

    ours = WarmupStableDecay(
        lr=lr,
        total=total,
        decay_steps=decay_steps,
        warmup_steps=warmup,
        end_lr=lr * ratio,
        decay=decay,
    )
    expected = torch_values(make, total + 100, lr=lr)
    np.testing.assert_allclose(ours.values(total + 100), expected, rtol=1e-12, atol=1e-15 * lr)


def test_wsd_rejects_phases_longer_than_total():
    with pytest.raises(ConfigError, match="wsd.decay_steps \\+ warmup_steps must be <= total"):
        from_config({"type": "wsd", "lr": 0.1, "total": 100, "decay_steps": 90, "warmup_steps": 20})
