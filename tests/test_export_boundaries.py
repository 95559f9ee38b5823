"""Exports exact at every period boundary (jax.jit float32, Keras) and gamma ** t in float32.

XLA rewrites ``t / c`` as ``t * (1 / c)``, so a plain ``floor(t / period)`` comes out one less at
some exact multiples; ``Ops.floor_div`` corrects it. ``Ops.power`` keeps ``gamma ** t`` to a few
float32 ulps where ``exp(t * log(gamma))`` in float32 drifts by 2% at ``t = 1e6``.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest

if "keras" not in sys.modules:  # Keras picks its backend at import: jax imports fastest here
    os.environ.setdefault("KERAS_BACKEND", "jax" if importlib.util.find_spec("jax") else "torch")

from lrlab.export import JaxOps, KerasOps, to_keras, to_optax
from lrlab.schedules import (
    Constant,
    CosineRestarts,
    DecayingSequence,
    Exponential,
    RandomAmplify,
    Step,
)

PERIODS = range(1, 1001)
MULTIPLES = 24  # k * period for k = 0 .. 23, and the step before each


def boundary_steps(period: int) -> np.ndarray:
    k = np.arange(MULTIPLES)
    return np.unique(np.concatenate([k * period, np.maximum(k * period - 1, 0)]))


def boundary_grid():
    """A (periods, steps) array of every boundary step and the step before it, per period."""
    rows = [boundary_steps(p) for p in PERIODS]
    width = max(len(r) for r in rows)
    return np.stack([np.pad(r, (0, width - len(r)), mode="edge") for r in rows])


@pytest.fixture(scope="module")
def jax():
    return pytest.importorskip("jax")


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _naive_late_periods(jax) -> list[int]:
    """The periods at which XLA's ``floor(t / c)`` is one period late at some multiple."""
    grid = boundary_grid()
    divisors = jax.numpy.asarray(np.arange(1, 1001, dtype=np.float32))[:, None]
    naive = jax.jit(lambda t: jax.numpy.floor(t / divisors))
    late = np.asarray(naive(jax.numpy.asarray(grid, dtype=jax.numpy.float32)))
    return [p for p, row in zip(PERIODS, late != grid // np.arange(1, 1001)[:, None]) if row.any()]


def test_every_array_namespace_satisfies_the_ops_protocol(jax, keras):
    from lrlab.schedules import NUMPY, SCALAR, Ops

    for ops in (SCALAR, NUMPY, JaxOps(), KerasOps()):
        assert isinstance(ops, Ops), type(ops).__name__
    # and they draw RALR's numbers alike, bit for bit (24-bit values, exact in float32)
    index = np.arange(0, 10**6, 997)
    reference = NUMPY.uniform(index, 0x12345678)
    assert [SCALAR.uniform(i, 0x12345678) for i in index[:50]] == reference[:50].tolist()
    jax_draws = np.asarray(JaxOps().uniform(jax.numpy.asarray(index), 0x12345678))
    assert np.array_equal(jax_draws, reference)
    keras_draws = keras.ops.convert_to_numpy(
        KerasOps().uniform(keras.ops.convert_to_tensor(index), 0x12345678)
    )
    assert np.array_equal(keras_draws, reference)


def test_floor_div_is_exact_under_jit_for_periods_1_to_1000(jax):
    ops = JaxOps()
    grid = boundary_grid()
    divisors = jax.numpy.asarray(np.arange(1, 1001, dtype=np.float32))[:, None]
    # the divisors are a constant of the traced function, as a schedule's period is
    exact = jax.jit(lambda t: ops.floor_div(t, divisors))
    got = np.asarray(exact(jax.numpy.asarray(grid, dtype=jax.numpy.float32)))
    assert np.array_equal(got, grid // np.arange(1, 1001)[:, None])
    # what the primitive replaces: floor(t / c) under jit is one period late at many periods
    assert len(_naive_late_periods(jax)) > 50, "XLA no longer rewrites t / c: no teeth left"


def periodic_schedules(period: int) -> dict:
    return {
        "step": Step(lr=1.0, step_size=period, gamma=0.5),
        "sequence": DecayingSequence(kind="seq1", lr=1.0, period=period),
        "ralr": RandomAmplify(base=Constant(lr=1.0), p=1.0, low=1.0, high=3.0, period=period),
        "cosine_restarts": CosineRestarts(lr=1.0, period=period),
        "cosine_restarts_mult2": CosineRestarts(lr=1.0, period=period, period_mult=2.0),
    }


KINDS = list(periodic_schedules(1))


@pytest.fixture(scope="module")
def sample_periods(jax):
    """End to end (a compile per schedule): 24 periods where plain XLA division is late, and a
    spread over 1-1000. The primitive itself is checked at every period above."""
    late = _naive_late_periods(jax)
    return sorted({*late[:: max(1, len(late) // 24)], 1, 2, 3, 7, 10, 100, 391, 997, 1000})


@pytest.mark.parametrize("kind", KINDS)
def test_optax_export_is_exact_at_boundaries_under_jit(jax, sample_periods, kind):
    for period in sample_periods:
        schedule = periodic_schedules(period)[kind]
        steps = boundary_steps(period)
        got = np.asarray(jax.jit(jax.vmap(to_optax(schedule)))(jax.numpy.asarray(steps)))
        # one period late is off by a factor of 2 (step), another draw (ralr), 0 instead of 1
        # (restarts); float32 rounding is 1e-6
        np.testing.assert_allclose(
            got, schedule.values(steps), rtol=2e-6, atol=1e-6, err_msg=str(period)
        )


@pytest.mark.parametrize("kind", KINDS)
def test_keras_export_is_exact_at_boundaries(keras, jax, sample_periods, kind):
    for period in sample_periods[::2]:
        schedule = periodic_schedules(period)[kind]
        steps = boundary_steps(period)
        lr = to_keras(schedule)
        got = keras.ops.convert_to_numpy(lr(keras.ops.convert_to_tensor(steps, dtype="int32")))
        np.testing.assert_allclose(
            got, schedule.values(steps), rtol=2e-6, atol=1e-6, err_msg=str(period)
        )
        if keras.backend.backend() == "jax":  # and compiled, as model.fit runs it
            got = np.asarray(jax.jit(lr)(jax.numpy.asarray(steps)))
            np.testing.assert_allclose(got, schedule.values(steps), rtol=2e-6, atol=1e-6)


# -------------------------------------------------------------------------------- gamma ** t

GAMMAS = [0.5, 0.9, 0.99, 0.999, 0.99994, 0.9999999, 1.0, 1.00001]
STEPS = np.unique(np.concatenate([np.arange(0, 1000), np.linspace(0, 10**6, 2001).astype(int)]))


def _reference(gamma):
    return Exponential(lr=1.0, gamma=gamma).values(STEPS)


def _worst_relative(got, ref):
    tiny = ref > 1e-30  # below, float32 has no relative precision left (and nor do we ask)
    return float(np.max(np.abs(got[tiny] - ref[tiny]) / ref[tiny]))


@pytest.mark.parametrize("gamma", GAMMAS)
def test_optax_power_relative_error_below_1e_6_up_to_a_million_steps(jax, gamma):
    fn = jax.jit(jax.vmap(to_optax(Exponential(lr=1.0, gamma=gamma))))
    got = np.asarray(fn(jax.numpy.asarray(STEPS, dtype=jax.numpy.int32)), dtype=np.float64)
    assert _worst_relative(got, _reference(gamma)) <= 1e-6


def test_plain_float32_exp_log_would_drift(jax):
    """The bug the primitive fixes: 2% at t = 1e6 for gamma 0.99994."""
    jnp = jax.numpy
    t = jnp.float32(1e6)
    naive = float(jax.jit(lambda t: jnp.exp(t * jnp.log(jnp.float32(0.99994))))(t))
    exact = 0.99994**1e6
    assert abs(naive - exact) / exact > 1e-3
    ops = JaxOps()
    assert abs(float(jax.jit(lambda t: ops.power(0.99994, t))(t)) - exact) / exact <= 1e-6


@pytest.mark.parametrize("gamma", GAMMAS)
def test_keras_power_relative_error_below_1e_6(keras, gamma):
    ops = KerasOps()
    got = keras.ops.convert_to_numpy(ops.power(gamma, keras.ops.convert_to_tensor(STEPS, "int32")))
    assert _worst_relative(np.asarray(got, np.float64), _reference(gamma)) <= 1e-6


def test_power_of_zero_and_growth_saturates(jax):
    ops = JaxOps()
    t = jax.numpy.asarray([0.0, 1.0, 5.0], dtype=jax.numpy.float32)
    assert np.asarray(ops.power(0.0, t)).tolist() == [1.0, 0.0, 0.0]
    big = np.asarray(ops.power(2.0, jax.numpy.asarray([1e6], jax.numpy.float32)))
    assert np.isfinite(big).all() and big[0] == np.finfo(np.float32).max
