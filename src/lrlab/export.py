"""Export an lrlab schedule to optax (JAX) or Keras 3, with the very same formula.

A schedule's formula is written once, in ``Schedule.evaluate(t, ops)``; this module only adds
two more namespaces ``ops``: :class:`JaxOps` (``jax.numpy``) and :class:`KerasOps`
(``keras.ops``, whatever the Keras backend). Nothing is re-implemented per schedule type, so an
export cannot drift from lrlab's values; it differs only by float32 rounding.

* :func:`to_optax` returns a function ``count -> learning rate`` that ``jax.jit`` traces and
  ``optax.sgd(learning_rate=...)`` (any optax optimizer) accepts, like ``optax.cosine_decay_schedule``.
* :func:`to_keras` returns a ``keras.optimizers.schedules.LearningRateSchedule`` whose
  ``get_config()`` carries the lrlab config dict (``keras.saving`` round-trips it).

Only schedules can be exported: a metric-driven policy depends on the metrics it observes, not
on the step count alone, and is rejected with a :class:`~lrlab.errors.ConfigError`.

jax / optax and keras are imported on first use; importing this module needs neither.

Example::

    import optax
    from lrlab.export import to_optax
    sched = to_optax({"type": "cyclic", "base_lr": 1e-3, "max_lr": 6e-3, "step_size_up": 2000})
    tx = optax.sgd(learning_rate=sched, momentum=0.9)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lrlab.errors import ConfigError
from lrlab.policies.driver import ScheduleDriver, as_driver
from lrlab.schedules.base import (
    MASK32,
    Schedule,
    exact_floor_div,
    hash_uniform,
)
from lrlab.schedules.function import FunctionSchedule

__all__ = [
    "JaxOps",
    "KerasOps",
    "as_exportable",
    "keras_schedule_class",
    "split_power",
    "to_keras",
    "to_optax",
]


def as_exportable(obj: Any, where: str = "schedule") -> Schedule:
    """``obj`` (a schedule or a config dict) as a :class:`Schedule`; a policy is a ConfigError."""
    driver = as_driver(obj, where)
    if driver.stateful:
        kind = getattr(driver, "type_name", "") or type(driver).__name__
        raise ConfigError(
            f"{where}: a metric-driven policy (type {kind!r}) cannot be exported: an optax or Keras "
            "schedule is a function of the step count alone. Export a schedule instead (e.g. the "
            "policy's 'schedule'), or drive the policy with lrlab.torch.Scheduler"
        )
    if not isinstance(driver, ScheduleDriver):
        raise ConfigError(f"{where} must be an lrlab schedule or a config dict, got {obj!r}")
    if isinstance(driver.schedule, FunctionSchedule):
        raise ConfigError(
            f"{where}: a schedule made by from_function cannot be exported: it wraps a Python "
            "callable, and an optax or Keras schedule is traced arithmetic"
        )
    return driver.schedule


# --------------------------------------------------------------------------------------------
# Shared by both namespaces: gamma ** t in float32 without the drift of exp(t * log(gamma)).

_SPLIT = 4096  # a step below 2**24 is a * 4096 + b with a, b < 2**12: 12-bit products are exact


def _split3(x: float) -> tuple[float, float, float]:
    """``x`` as ``hi + mid + lo``: two 12-bit parts (exact in products with 12-bit integers)
    and a remainder 2**-24 times smaller."""
    parts: list[float] = []
    for _ in range(2):
        mantissa, exponent = math.frexp(x - sum(parts))
        parts.append(math.ldexp(round(mantissa * 4096) / 4096, exponent))
    return parts[0], parts[1], x - parts[0] - parts[1]


def split_power(base: float, exponent, ops, pow2):
    """``base ** exponent`` for an integer-valued ``exponent`` to a few float32 ulps
    (``pow2(k)``: an exact ``2.0 ** k`` for integer-valued ``k``).

    ``exp(t * log(base))`` in float32 is off by ``|t * log(base)| * 6e-8`` relative (2% at
    gamma 0.99994, t = 1e6): the argument of ``exp`` is rounded. Here ``log2(base)`` is taken in
    float64 and split, ``t = a * 4096 + b`` likewise, so that ``t * log2(base)`` is a sum of exact
    float32 products; their integer parts ``k`` go to ``pow2(k)`` and only the fractional rest
    ``r`` in [0, 5) to ``exp(r * ln 2)``.
    """
    if base == 0.0:
        return ops.where(exponent == 0, 1.0, 0.0)
    log2_base = math.log2(base)
    if log2_base == 0.0:
        return 1.0 + 0.0 * exponent
    a = ops.floor_div(exponent, _SPLIT)
    b = exponent - a * _SPLIT
    big, small = _split3(_SPLIT * log2_base), _split3(log2_base)
    exact = (a * big[0], a * big[1], b * small[0], b * small[1])
    whole = [ops.floor(x) for x in exact]
    rest = (exact[0] - whole[0]) + (exact[1] - whole[1]) + (exact[2] - whole[2])
    rest = rest + (exact[3] - whole[3]) + (a * big[2] + b * small[2])
    scale = pow2((whole[0] + whole[1]) + (whole[2] + whole[3]))
    return ops.minimum(ops.exp(rest * math.log(2.0)) * scale, ops.huge)


# --------------------------------------------------------------------------------------------
# JAX


class _JaxUInt32:
    """Unsigned 32-bit arithmetic on ``jnp.uint32`` arrays (multiplication wraps)."""

    def __init__(self, jnp, float_dtype):
        self.jnp, self.float_dtype = jnp, float_dtype

    def _const(self, value):
        return self.jnp.uint32(value) if isinstance(value, int) else value

    def xor(self, a, b):
        return self.jnp.bitwise_xor(a, self._const(b))

    def shr(self, a, b):
        return self.jnp.right_shift(a, self._const(b))

    def mul(self, a, b):
        return self.jnp.multiply(a, self._const(b))

    def to_float(self, x):
        return x.astype(self.float_dtype)


class JaxOps:
    """``jax.numpy`` implementations of :class:`lrlab.schedules.Ops`.

    Computes in JAX's default float type: float32, or float64 when ``jax_enable_x64`` is on.
    """

    def __init__(self):
        import jax.numpy as jnp

        self.jnp = jnp
        self.pi = math.pi
        self.float_dtype = jnp.result_type(float)
        self.huge = float(np.finfo(self.float_dtype).max)
        self.floor, self.exp, self.log = jnp.floor, jnp.exp, jnp.log
        self.cos, self.sqrt = jnp.cos, jnp.sqrt
        self.minimum, self.maximum = jnp.minimum, jnp.maximum
        self.where, self.clip = jnp.where, jnp.clip
        self._u32 = _JaxUInt32(jnp, self.float_dtype)

    def count_le(self, boundaries, t):
        """Number of boundaries <= t."""
        b = self.jnp.asarray(np.asarray(boundaries, dtype=np.float64), dtype=self.float_dtype)
        return self.jnp.searchsorted(b, t, side="right")

    def take(self, table, index):
        values = self.jnp.asarray(np.asarray(table, dtype=np.float64), dtype=self.float_dtype)
        return self.jnp.take(values, self.jnp.asarray(index).astype(self.jnp.int32), mode="clip")

    def floor_div(self, t, n):
        return exact_floor_div(t, n, self)

    def power(self, base, exponent):
        exponent = self.jnp.asarray(exponent).astype(self.float_dtype)
        return split_power(base, exponent, self, lambda k: self.jnp.power(2.0, k))

    def uniform(self, index, key):
        x = self.jnp.asarray(index).astype(self.jnp.uint32)
        return hash_uniform(x, key, self._u32)


def to_optax(schedule):
    """An optax-style schedule: a pure, jit-traceable function ``count -> learning rate``.

    ``schedule`` is an lrlab schedule or config dict. The result is lrlab's value at step
    ``count`` (the number of updates so far, as optax counts them) in JAX's default float type.

    Example::

        import jax, optax
        fn = to_optax({"type": "cosine", "lr": 0.1, "total": 1000})
        float(jax.jit(fn)(500))        # 0.05
        tx = optax.adam(learning_rate=fn)
    """
    sched = as_exportable(schedule, "to_optax(schedule)")
    ops = JaxOps()
    jnp = ops.jnp

    def lrlab_schedule(count):
        t = jnp.asarray(count).astype(ops.float_dtype)
        return jnp.asarray(sched.evaluate(t, ops), dtype=ops.float_dtype)

    lrlab_schedule.__name__ = f"lrlab_{sched.type_name}"
    lrlab_schedule.__qualname__ = lrlab_schedule.__name__
    lrlab_schedule.__doc__ = f"optax schedule exported from lrlab config {sched.to_config()!r}"
    exported: Any = lrlab_schedule  # a function with two attributes, as optax users read them
    exported.lrlab_schedule = sched
    exported.lrlab_config = sched.to_config()
    return exported


# --------------------------------------------------------------------------------------------
# Keras 3


class _KerasUInt32:
    """Unsigned 32-bit arithmetic with ``keras.ops`` (on every Keras backend; Keras' torch
    backend casts "uint32" to int64, hence the mask after each product)."""

    def __init__(self, kops, float_dtype):
        self.kops, self.float_dtype = kops, float_dtype

    def _const(self, value):
        if isinstance(value, int):
            return self.kops.convert_to_tensor(np.uint32(value), dtype="uint32")
        return value

    def xor(self, a, b):
        return self.kops.bitwise_xor(a, self._const(b))

    def shr(self, a, b):
        return self.kops.right_shift(a, self._const(b))

    def mul(self, a, b):
        # the mask is a no-op on uint32, and keeps the low 32 bits where a backend (torch)
        # holds "uint32" in int64
        return self.kops.bitwise_and(self.kops.multiply(a, self._const(b)), self._const(MASK32))

    def to_float(self, x):
        return self.kops.cast(x, self.float_dtype)


class KerasOps:
    """``keras.ops`` implementations of :class:`lrlab.schedules.Ops`: runs on whichever backend
    Keras uses (jax, torch, tensorflow), in ``keras.backend.floatx()``."""

    def __init__(self):
        import keras

        ops = keras.ops
        self.kops = ops
        self.float_dtype = keras.backend.floatx()
        self.huge = float(np.finfo(self.float_dtype).max)
        self.pi = math.pi
        self.floor, self.exp, self.log = ops.floor, ops.exp, ops.log
        self.cos, self.sqrt = ops.cos, ops.sqrt
        self.minimum, self.maximum = ops.minimum, ops.maximum
        self.where, self.clip = ops.where, ops.clip
        self._u32 = _KerasUInt32(ops, self.float_dtype)

    def count_le(self, boundaries, t):
        b = self.kops.convert_to_tensor(np.asarray(boundaries, dtype=self.float_dtype))
        return self.kops.searchsorted(b, t, side="right")

    def take(self, table, index):
        values = self.kops.convert_to_tensor(np.asarray(table, dtype=self.float_dtype))
        return self.kops.take(values, self.kops.cast(index, "int32"))

    def floor_div(self, t, n):
        return exact_floor_div(t, n, self)

    def power(self, base, exponent):
        exponent = self.kops.cast(exponent, self.float_dtype)
        return split_power(base, exponent, self, lambda k: self.kops.power(2.0, k))

    def uniform(self, index, key):
        return hash_uniform(self.kops.cast(index, "uint32"), key, self._u32)


_KERAS_CLASS = None


def keras_schedule_class():
    """The ``LearningRateSchedule`` subclass behind :func:`to_keras` (built and registered with
    ``keras.saving`` as ``"lrlab>Schedule"`` on first use, so importing lrlab never imports keras)."""
    global _KERAS_CLASS
    if _KERAS_CLASS is not None:
        return _KERAS_CLASS
    import keras

    @keras.saving.register_keras_serializable(package="lrlab", name="Schedule")
    class LrlabKerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
        """An lrlab schedule as a Keras 3 learning-rate schedule; ``get_config()`` holds the
        lrlab config dict under ``"config"``."""

        def __init__(self, config, name=None):
            super().__init__()
            self.schedule = as_exportable(config, "to_keras(schedule)")
            self.config = self.schedule.to_config()
            self.name = name or f"lrlab_{self.schedule.type_name}"
            self._ops = None

        def __call__(self, step):
            if self._ops is None:
                self._ops = KerasOps()
            ops = self._ops
            t = ops.kops.cast(step, ops.float_dtype)
            return ops.kops.cast(self.schedule.evaluate(t, ops), ops.float_dtype)

        def get_config(self):
            return {"config": dict(self.config), "name": self.name}

        def __repr__(self):
            return f"LrlabKerasSchedule({self.config!r})"

    _KERAS_CLASS = LrlabKerasSchedule
    return _KERAS_CLASS


def to_keras(schedule, name: str | None = None):
    """A Keras 3 ``LearningRateSchedule`` computing ``schedule`` with ``keras.ops``.

    Example::

        import keras
        lr = to_keras({"type": "cyclic", "base_lr": 1e-3, "max_lr": 6e-3, "step_size_up": 2000})
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
        lr.get_config()   # {"config": {"type": "cyclic", ...}, "name": "lrlab_cyclic"}
    """
    sched = as_exportable(schedule, "to_keras(schedule)")
    return keras_schedule_class()(sched.to_config(), name=name)
