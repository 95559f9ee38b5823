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
from lrlab.schedules.base import Schedule

__all__ = ["JaxOps", "KerasOps", "as_exportable", "keras_schedule_class", "to_keras", "to_optax"]

_MASK = 0xFFFFFFFF


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
    return driver.schedule


# --------------------------------------------------------------------------------------------
# 32-bit integer arithmetic for RALR's hash on array backends.
#
# ``lrlab.schedules.ralr`` hashes with Python operators (``^ >> * &``) and Python-int constants
# such as 0x9E3779B9. JAX converts a bare Python int to int32 (it overflows) and backends differ
# on unsigned support, so ``to_uint32`` returns this small wrapper: every operand is turned into
# a uint32 array of the backend first, and multiplication wraps modulo 2**32 like the reference.


class _UInt32:
    __slots__ = ("ns", "value")

    def __init__(self, value, ns):
        self.value, self.ns = value, ns

    def _other(self, other):
        return other.value if isinstance(other, _UInt32) else self.ns.uint32_const(other)

    def _wrap(self, value):
        return _UInt32(value, self.ns)

    def __xor__(self, other):
        return self._wrap(self.ns.bit_xor(self.value, self._other(other)))

    __rxor__ = __xor__

    def __and__(self, other):
        return self._wrap(self.ns.bit_and(self.value, self._other(other)))

    __rand__ = __and__

    def __mul__(self, other):
        return self._wrap(self.ns.mul(self.value, self._other(other)))

    __rmul__ = __mul__

    def __rshift__(self, other):
        return self._wrap(self.ns.shift_right(self.value, self._other(other)))


# --------------------------------------------------------------------------------------------
# JAX


class JaxOps:
    """``jax.numpy`` implementations (mirrors ``lrlab.schedules.base.NumpyOps``).

    Computes in JAX's default float type: float32, or float64 when ``jax_enable_x64`` is on.
    """

    def __init__(self):
        import jax.numpy as jnp

        self.jnp = jnp
        self.pi = math.pi
        self.floor, self.exp, self.log = jnp.floor, jnp.exp, jnp.log
        self.cos, self.sqrt = jnp.cos, jnp.sqrt
        self.minimum, self.maximum = jnp.minimum, jnp.maximum
        self.where, self.clip = jnp.where, jnp.clip

    @property
    def float_dtype(self):
        return self.jnp.result_type(float)

    def count_le(self, boundaries, t):
        """Number of boundaries <= t."""
        b = self.jnp.asarray(np.asarray(boundaries, dtype=np.float64), dtype=self.float_dtype)
        return self.jnp.searchsorted(b, t, side="right")

    # integer arithmetic for _UInt32
    def uint32_const(self, value):
        return np.uint32(int(value) & _MASK)

    def bit_xor(self, a, b):
        return self.jnp.bitwise_xor(a, b)

    def bit_and(self, a, b):
        return self.jnp.bitwise_and(a, b)

    def mul(self, a, b):
        return self.jnp.multiply(a, b)  # uint32: wraps modulo 2**32

    def shift_right(self, a, b):
        return self.jnp.right_shift(a, b)

    def to_uint32(self, x):
        return _UInt32(self.jnp.asarray(x).astype(self.jnp.uint32), self)

    def to_float(self, x):
        if isinstance(x, _UInt32):
            x = x.value
        return self.jnp.asarray(x).astype(self.float_dtype)


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
    lrlab_schedule.lrlab_schedule = sched
    lrlab_schedule.lrlab_config = sched.to_config()
    return lrlab_schedule


# --------------------------------------------------------------------------------------------
# Keras 3


class KerasOps:
    """``keras.ops`` implementations: runs on whichever backend Keras uses (jax, torch, tensorflow)."""

    def __init__(self):
        import keras

        ops = keras.ops
        self.kops = ops
        self.float_dtype = keras.backend.floatx()
        self.pi = math.pi
        self.floor, self.exp, self.log = ops.floor, ops.exp, ops.log
        self.cos, self.sqrt = ops.cos, ops.sqrt
        self.minimum, self.maximum = ops.minimum, ops.maximum
        self.where, self.clip = ops.where, ops.clip

    def count_le(self, boundaries, t):
        b = self.kops.convert_to_tensor(np.asarray(boundaries, dtype=self.float_dtype))
        return self.kops.searchsorted(b, t, side="right")

    def uint32_const(self, value):
        return self.kops.convert_to_tensor(np.uint32(int(value) & _MASK), dtype="uint32")

    def bit_xor(self, a, b):
        return self.kops.bitwise_xor(a, b)

    def bit_and(self, a, b):
        return self.kops.bitwise_and(a, b)

    def mul(self, a, b):
        return self.kops.multiply(a, b)

    def shift_right(self, a, b):
        return self.kops.right_shift(a, b)

    def to_uint32(self, x):
        return _UInt32(self.kops.cast(x, "uint32"), self)

    def to_float(self, x):
        if isinstance(x, _UInt32):
            x = x.value
        return self.kops.cast(x, self.float_dtype)


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
