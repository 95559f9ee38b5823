"""Exports are exact at every period boundary (jax.jit float32, Keras) and gamma ** t in float32.

XLA divides by a scalar as ``t * (1 / c)`` (a constant period or not), so a plain
``floor(t / period)`` comes out one less at some exact multiples; ``Ops.floor_div`` corrects it.
Proved here for periods 1-1000, at every multiple k * period (k < 24) and the step before it:

* the primitive itself, under jit;
* end to end, schedules step, sequence, ralr and cosine_restarts exported by ``to_optax`` under
  ``jax.jit`` and by ``to_keras`` eagerly and under ``jax.jit``, equal to lrlab's float64 values
  to float32 rounding (a period late is off by far more). All 1000 periods go through one
  compile per kind and path, the period a constant column (see ``column_schedule``); that the
  column computes bit for bit what a schedule built as users build it does is checked at a few
  periods, and so is cosine_restarts with growing periods (period_mult 2), which has no column:
  it is checked at every period 1-1000 eagerly in optax and Keras, one schedule per period;
* that the check bites: with the naive ``floor(t / n)`` it fails at every period where the bare
  division is late, on each path.

``Ops.power`` keeps ``gamma ** t`` to a few float32 ulps where ``exp(t * log(gamma))`` in float32
drifts by 2% at ``t = 1e6``.
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
# the field each kind divides steps by; cosine_restarts_mult2 has none (a table of starts)
COLUMN_KINDS = {
    "step": "step_size",
    "sequence": "period",
    "ralr": "period",
    "cosine_restarts": "period",
}
PERIOD_COLUMN = np.arange(1, 1001)[:, None]
PATHS = ["optax_jit", "keras_eager", "keras_jit"]


def column_schedule(kind: str):
    """The ``kind`` schedule at every period 1..1000 at once, row ``p - 1`` at period ``p``.

    A compile per exported schedule costs ~40 ms of XLA codegen however many share a jit, so
    1000 periods x 4 kinds x 2 compiled paths would take minutes. Here the period is a constant
    (1000, 1) array: the very ``evaluate`` and ops run in one compile, and the steps are still
    divided by a compile-time constant broadcast against them, as by an int period.
    """
    schedule = periodic_schedules(1)[kind]
    object.__setattr__(schedule, COLUMN_KINDS[kind], PERIOD_COLUMN)  # check_int would refuse it
    return schedule


def column_values(path: str, kind: str, jax, keras) -> np.ndarray:
    """The column schedule of ``kind`` exported and run on the boundary grid as ``path`` runs it."""
    grid, schedule = boundary_grid(), column_schedule(kind)
    if path == "optax_jit":  # the count is a traced argument, as in an optax update
        return np.asarray(jax.jit(to_optax(schedule))(jax.numpy.asarray(grid)))
    lr = to_keras(periodic_schedules(1)[kind])
    lr.schedule = schedule  # to_keras rebuilds from the config, which cannot hold a column
    if path == "keras_eager":  # as optimizer.learning_rate reads it
        return keras.ops.convert_to_numpy(lr(keras.ops.convert_to_tensor(grid, dtype="int32")))
    if keras.backend.backend() != "jax":
        pytest.skip("Keras compiles the schedule with jax.jit only on its jax backend")
    return np.asarray(jax.jit(lr)(jax.numpy.asarray(grid)))  # as model.fit's train step runs it


@pytest.fixture(scope="module")
def reference() -> dict:
    """lrlab's float64 values on the boundary grid, per kind, from the real schedules."""
    grid = boundary_grid()
    return {
        kind: np.stack([periodic_schedules(p)[kind].values(row) for p, row in zip(PERIODS, grid)])
        for kind in KINDS
    }


def inexact_periods(got: np.ndarray, ref: np.ndarray) -> list[int]:
    """The periods at which some boundary value is not lrlab's to float32 rounding.

    One period late is off by a factor of 2 (step), 1/k (sequence), another draw (ralr), 0 for
    1 (restarts): all far beyond 1e-6. The atol is for the step before a restart, where the
    cosine is ~(pi / period)**2 / 4 and float32 cos carries ~6e-8 absolute.
    """
    bad = ~np.isclose(got, ref, rtol=1e-6, atol=1e-6)
    return [p for p, row in zip(PERIODS, bad) if row.any()]


@pytest.fixture(scope="module")
def columns(jax, keras):
    """``column_values`` per (path, kind), computed once for the two tests that read them."""
    cache: dict = {}

    def get(path: str, kind: str) -> np.ndarray:
        if (path, kind) not in cache:
            cache[path, kind] = column_values(path, kind, jax, keras)
        return cache[path, kind]

    return get


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", COLUMN_KINDS)
def test_export_is_exact_at_every_boundary_for_periods_1_to_1000(columns, reference, kind, path):
    got = columns(path, kind)
    assert inexact_periods(got, reference[kind]) == []


@pytest.mark.parametrize("path", PATHS)
def test_naive_floor_division_fails_that_check_wherever_xla_is_late(
    jax, keras, reference, monkeypatch, path
):
    """The check bites: with ``floor(t / n)`` for ``floor_div`` every kind fails it at exactly the
    periods where the bare division is late (even eagerly: XLA divides by a broadcast scalar as
    ``t * (1 / n)``, constant or not)."""

    def naive(ops, t, n):
        return ops.floor(t / n)

    monkeypatch.setattr(JaxOps, "floor_div", naive)
    monkeypatch.setattr(KerasOps, "floor_div", naive)
    late = _naive_late_periods(jax)
    assert len(late) > 50, "XLA no longer rewrites t / c: no teeth left"
    for kind in COLUMN_KINDS:
        got = column_values(path, kind, jax, keras)
        assert inexact_periods(got, reference[kind]) == late, kind


@pytest.fixture(scope="module")
def sample_periods(jax):
    """Two periods where plain XLA division is late, and the ends of 1-1000 (each adds ~1 s:
    schedules with int periods compile one by one)."""
    late = _naive_late_periods(jax)
    return sorted({late[0], late[len(late) // 2], 1, 1000})


@pytest.fixture(scope="module")
def real_exports(jax, keras, sample_periods) -> dict:
    """``(kind, period) -> (optax under jit, Keras eager, Keras under jit)`` for the schedules
    exactly as users build them, at the sample periods; the compiled ones in a single compile."""
    if keras.backend.backend() != "jax":
        pytest.skip("Keras compiles the schedule with jax.jit only on its jax backend")
    grid = jax.numpy.asarray(boundary_grid())
    jobs = [(kind, p, periodic_schedules(p)[kind]) for kind in KINDS for p in sample_periods]
    keras_lrs = [to_keras(schedule) for _, _, schedule in jobs]
    optax_fns = [to_optax(schedule) for _, _, schedule in jobs]

    def compiled(g):
        rows = [g[p - 1] for _, p, _ in jobs]
        return [f(r) for f, r in zip(optax_fns, rows)], [lr(r) for lr, r in zip(keras_lrs, rows)]

    optax_got, keras_jit = jax.jit(compiled)(grid)
    eager = [lr(keras.ops.convert_to_tensor(grid[p - 1])) for lr, (_, p, _) in zip(keras_lrs, jobs)]
    return {
        (kind, p): tuple(np.asarray(x) for x in values)
        for (kind, p, _), *values in zip(jobs, optax_got, eager, keras_jit)
    }


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", COLUMN_KINDS)
def test_the_column_computes_bit_for_bit_what_the_exported_schedule_does(
    columns, real_exports, sample_periods, kind, path
):
    column = columns(path, kind)
    for p in sample_periods:
        assert np.array_equal(column[p - 1], real_exports[kind, p][PATHS.index(path)]), p


def test_exported_schedules_are_exact_at_sample_periods(reference, real_exports):
    """All kinds as users build them; the only check of cosine_restarts_mult2, whose period
    enters through its table of starts (a search, no division by it), so no column exists."""
    for (kind, p), values in real_exports.items():
        for path, got in zip(PATHS, values):
            ref, msg = reference[kind][p - 1], f"{kind} at period {p}, {path}"
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6, err_msg=msg)


@pytest.mark.parametrize("path", ["optax_eager", "keras_eager"])
def test_restarts_with_a_period_multiplier_are_exact_at_every_period_1_to_1000(
    jax, keras, reference, path
):
    """cosine_restarts_mult2 as users build it, one schedule per period (eagerly: XLA runs the
    same kernels op by op, and a compile per period would take minutes); compiled, it is
    checked at the sample periods above."""
    grid, bad = boundary_grid(), []
    for p, row in zip(PERIODS, grid):
        schedule = periodic_schedules(p)["cosine_restarts_mult2"]
        if path == "optax_eager":
            got = np.asarray(to_optax(schedule)(jax.numpy.asarray(row)))
        else:
            steps = keras.ops.convert_to_tensor(row, dtype="int32")
            got = keras.ops.convert_to_numpy(to_keras(schedule)(steps))
        if inexact_periods(got[None], reference["cosine_restarts_mult2"][p - 1][None]):
            bad.append(p)
    assert bad == []


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
