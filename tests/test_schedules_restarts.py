"""SGDR (cosine_restarts): exact restarts at every integer period start, restart decay and a
maximum number of restarts, against exact rational arithmetic, torch, timm and Keras."""

import importlib.util
import math
import os
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from helpers import torch_values

if "keras" not in sys.modules:  # Keras picks its backend at import: jax imports fastest here
    os.environ.setdefault("KERAS_BACKEND", "jax" if importlib.util.find_spec("jax") else "torch")

from lrlab.errors import ConfigError
from lrlab.schedules import CosineRestarts, from_config

MULTS = ("1.1", "1.25", "1.5", "1.8", "2.5")
HORIZON = 10**6


def exact_starts(period: int, mult: Fraction, horizon: int) -> list[Fraction]:
    """Period starts ``period * (mult**n - 1) / (mult - 1)``, exactly, up to ``horizon``."""
    starts, power = [Fraction(0)], Fraction(1)
    while starts[-1] <= horizon:
        power *= mult
        starts.append(period * (power - 1) / (mult - 1))
    return starts


@pytest.mark.parametrize("mult", MULTS)
def test_every_integer_period_start_restarts_for_periods_1_to_1000(mult):
    """The issue's case first: period 3, mult 1.8 restarted late (0.0 at step 3)."""
    assert from_config({"type": "cosine_restarts", "lr": 1, "period": 3, "period_mult": 1.8})(3)
    checked = 0
    for period in range(1, 1001):
        s = CosineRestarts(lr=1.0, period=period, period_mult=float(mult))
        starts = exact_starts(period, Fraction(mult), HORIZON)
        integer = [int(x) for x in starts[1:-1] if x.denominator == 1]
        values = s.values(integer) if integer else []
        for step, vector in zip(integer, values):
            assert s(step) == 1.0 and vector == 1.0, (period, mult, step)
            # the step before is the end of the previous period, not a restart
            assert s(step - 1) < 1.0 or (period == 1 and step == 1), (period, mult, step)
            checked += 1
    assert checked > 100


def reference_values(period: int, mult: Fraction, steps: int) -> np.ndarray:
    """lr = 1, end_lr = 0: the period of each step by exact comparison, cos in float64."""
    starts = exact_starts(period, mult, steps)
    first_step = np.array([math.ceil(x) for x in starts])  # the first integer step of period n
    t = np.arange(steps)
    n = np.searchsorted(first_step, t, side="right") - 1
    start = np.array([float(x) for x in starts])[n]
    length = np.array([float(b - a) for a, b in zip(starts, starts[1:])] + [1.0])[n]
    return (1 + np.cos(np.pi * (t - start) / length)) / 2


@pytest.mark.parametrize("mult", MULTS)
def test_values_equal_exact_rational_reference(mult):
    for period in (*range(1, 60), *range(60, 1001, 37)):
        s = CosineRestarts(lr=1.0, period=period, period_mult=float(mult))
        expected = reference_values(period, Fraction(mult), 20_000)
        np.testing.assert_allclose(s.values(20_000), expected, rtol=0, atol=1e-9)


def test_restart_decay_and_max_restarts_hand_values():
    s = CosineRestarts(lr=1.0, period=2, period_mult=2, restart_decay=0.5, max_restarts=1)
    half = [1.0, 0.5, 0.5, 0.25 * (1 + math.cos(math.pi / 4)), 0.25]
    expected = [*half, 0.25 * (1 + math.cos(3 * math.pi / 4)), 0.0, 0.0]
    assert [s(t) for t in range(8)] == pytest.approx(expected, rel=1e-15, abs=1e-17)
    assert s.horizon == 6
    assert CosineRestarts(lr=1.0, period=5, max_restarts=2).horizon == 15


@pytest.mark.parametrize("period,mult", [(7, 1), (1, 2), (5, 3)])
def test_matches_torch_over_100k_steps(period, mult):
    s = CosineRestarts(lr=0.3, end_lr=0.01, period=period, period_mult=mult)
    make = lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        o, T_0=period, T_mult=mult, eta_min=0.01
    )
    expected = torch_values(make, 100_000, 0.3)
    np.testing.assert_allclose(s.values(100_000), expected, rtol=1e-9)


# ------------------------------------------------------------------------------------ timm


@pytest.fixture(scope="module")
def timm_cosine():
    module = pytest.importorskip("timm.scheduler.cosine_lr", reason="timm is not installed")
    return module.CosineLRScheduler


TIMM_CASES = [
    # period, mult, decay, max_restarts (None: no limit)
    (10, 1.0, 1.0, None),
    (10, 1.0, 0.5, None),
    (7, 2.0, 0.8, None),
    (3, 3.0, 0.5, 3),
    (20, 1.0, 0.9, 4),
    (1, 2.0, 0.7, 10),
]


@pytest.mark.parametrize("period,mult,decay,max_restarts", TIMM_CASES)
def test_matches_timm_cycle_decay_and_cycle_limit(timm_cosine, period, mult, decay, max_restarts):
    """timm's CosineLRScheduler._get_lr(t) (its explicit step), t_in_epochs, no warmup/noise."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    limit = 10**9 if max_restarts is None else max_restarts + 1
    timm = timm_cosine(
        opt, t_initial=period, lr_min=0.002, cycle_mul=mult, cycle_decay=decay, cycle_limit=limit
    )
    ours = CosineRestarts(
        lr=0.2,
        period=period,
        end_lr=0.002,
        period_mult=mult,
        restart_decay=decay,
        max_restarts=max_restarts,
    )
    steps = range(100_000) if mult == 1.0 else range(0, 100_000, 3)
    expected = np.array([timm._get_lr(t)[0] for t in steps])
    got = ours.values(np.array(steps))
    # timm finds the period with a logarithm, which misses some starts by one step; there it
    # is at the very end of the previous period: compare everywhere else to 1e-12
    same_period = np.abs(got - expected) < 1e-6
    assert same_period.mean() > 0.999
    np.testing.assert_allclose(got[same_period], expected[same_period], rtol=1e-12)


# ----------------------------------------------------------------------------------- Keras


@pytest.mark.integration  # Keras (on JAX)
@pytest.mark.parametrize("mult,decay", [(1.0, 0.5), (2.0, 0.8), (3.0, 1.0), (1.0, 1.0)])
def test_matches_keras_cosine_decay_restarts(mult, decay):
    """Keras' m_mul is restart_decay where the conventions overlap: alpha = 0 = end_lr."""
    keras = pytest.importorskip("keras")
    period = 13
    keras_lr = keras.optimizers.schedules.CosineDecayRestarts(
        0.1, first_decay_steps=period, t_mul=mult, m_mul=decay, alpha=0.0
    )
    ours = CosineRestarts(lr=0.1, period=period, period_mult=mult, restart_decay=decay)
    t = np.arange(5000)
    expected = keras.ops.convert_to_numpy(keras_lr(keras.ops.arange(5000))).astype(np.float64)
    got = ours.values(t)
    # Keras computes t / period in float32 (and the period by a logarithm): it agrees to the
    # float32 rounding of that fraction, ~t * 6e-8 / period of a period, away from restarts
    same_period = np.abs(got - expected) < 1e-3 * 0.1
    assert same_period.mean() > 0.99
    np.testing.assert_allclose(got[same_period], expected[same_period], rtol=0, atol=5e-6)


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "config,fragment",
    [
        ({"period_mult": 1.0001}, "period_mult must be 1 or >= 1.001"),
        ({"period_mult": 0.5}, "period_mult must be a finite number >= 1"),
        ({"restart_decay": 1.5}, "restart_decay must be a finite number >= 0 and <= 1"),
        ({"max_restarts": -1}, "max_restarts must be an integer >= 0"),
        ({"max_restarts": 2.5}, "max_restarts must be an integer"),
    ],
)
def test_bad_restart_fields_are_one_line_errors(config, fragment):
    with pytest.raises(ConfigError, match=fragment):
        from_config({"type": "cosine_restarts", "lr": 0.1, "period": 3, **config})
