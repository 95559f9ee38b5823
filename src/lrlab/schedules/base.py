"""The schedule value type, its config registry, and the array namespaces formulas are written in.

A schedule's formula is written once, in :meth:`Schedule.evaluate`, against a namespace ``ops``
that satisfies the :class:`Ops` protocol. The same code then runs on Python floats
(``schedule(step)``, the fast path a training loop uses), on NumPy arrays (``schedule.values``,
for plots) and on JAX or Keras tensors (the exports in :mod:`lrlab.export`), so they can never
disagree about the formula.

Three primitives carry what float arithmetic alone gets wrong on some backend:
:meth:`Ops.floor_div` (XLA turns ``t / c`` into ``t * (1 / c)``, one period late at exact
multiples), :meth:`Ops.power` (``gamma ** t`` in float32 drifts for ``gamma`` near 1) and
:meth:`Ops.uniform` (RALR's integer hash, in each backend's own unsigned 32-bit arithmetic).

Values never overflow: every product or sum that could exceed the namespace's largest finite
float is saturated at :attr:`Ops.huge` (about 1.8e308 in float64), so an accepted config never
yields ``inf`` or ``NaN``.
"""

from __future__ import annotations

import bisect
import contextvars
import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from lrlab import validate
from lrlab.errors import ConfigError, unknown_name_error

MASK32 = 0xFFFFFFFF
#: The largest step at which a schedule is evaluated exactly: a float64 step counter counts
#: every integer up to here.
MAX_STEP = validate.MAX_INT

# --------------------------------------------------------------------------------------------
# Array namespaces


@runtime_checkable
class Ops(Protocol):
    """What a schedule's formula may use. Arguments ``t`` / ``x`` are the namespace's arrays
    (or Python floats for :data:`SCALAR`); ``n``, ``base`` and ``key`` are Python numbers."""

    pi: float
    huge: float  # the largest finite value of the float type; values saturate here

    def floor(self, x: Any) -> Any: ...
    def exp(self, x: Any) -> Any: ...
    def log(self, x: Any) -> Any: ...
    def cos(self, x: Any) -> Any: ...
    def sqrt(self, x: Any) -> Any: ...
    def minimum(self, a: Any, b: Any) -> Any: ...
    def maximum(self, a: Any, b: Any) -> Any: ...
    def where(self, cond: Any, a: Any, b: Any) -> Any: ...
    def clip(self, x: Any, lo: Any, hi: Any) -> Any: ...

    def count_le(self, boundaries: Sequence[float], t: Any) -> Any:
        """The number of ``boundaries`` (sorted) that are <= t."""
        ...

    def take(self, table: Sequence[float], index: Any) -> Any:
        """``table[index]`` for an integer-valued ``index``."""
        ...

    def floor_div(self, t: Any, n: int) -> Any:
        """``floor(t / n)``, exact at every multiple of the integer ``n``."""
        ...

    def power(self, base: float, exponent: Any) -> Any:
        """``base ** exponent`` for a Python float ``base >= 0``, saturated at :attr:`huge`."""
        ...

    def uniform(self, index: Any, key: int) -> Any:
        """A uniform number in [0, 1) that depends only on (``index`` as uint32, ``key``)."""
        ...


def mix32(x, u32):
    """A 32-bit avalanche hash (lowbias32) written with the integer namespace ``u32``."""
    x = u32.xor(x, u32.shr(x, 16))
    x = u32.mul(x, 0x7FEB352D)
    x = u32.xor(x, u32.shr(x, 15))
    x = u32.mul(x, 0x846CA68B)
    return u32.xor(x, u32.shr(x, 16))


def hash_uniform(x, key: int, u32):
    """RALR's draw: 24 bits of a double hash of ``x ^ key``, exact in float32 too.

    ``u32`` supplies ``xor``, ``shr``, ``mul`` (modulo 2**32) and ``to_float`` for the backend's
    unsigned 32-bit integers; the constants are Python ints.
    """
    x = mix32(u32.xor(x, key), u32)
    x = mix32(u32.xor(x, (key * 0x85EBCA6B) & MASK32), u32)
    return u32.to_float(u32.shr(x, 8)) * (1.0 / 16777216.0)


class _PyUInt32:
    """Unsigned 32-bit arithmetic on Python ints."""

    xor = staticmethod(lambda a, b: a ^ b)
    shr = staticmethod(lambda a, b: a >> b)
    mul = staticmethod(lambda a, b: (a * b) & MASK32)
    to_float = staticmethod(float)


class _NpUInt32:
    """Unsigned 32-bit arithmetic on ``np.uint32`` arrays (multiplication wraps)."""

    @staticmethod
    def xor(a, b):
        return np.bitwise_xor(a, np.uint32(b) if isinstance(b, int) else b)

    @staticmethod
    def shr(a, b):
        return np.right_shift(a, np.uint32(b))

    @staticmethod
    def mul(a, b):
        return np.multiply(a, np.uint32(b))

    @staticmethod
    def to_float(x):
        return np.asarray(x, dtype=np.float64)


def exact_floor_div(t, n: int, ops):
    """``floor(t / n)`` corrected by one where the division rounded across an integer.

    The products ``q * n`` are exact for the integer-valued floats a step counter holds, so
    the result is exact at every multiple of ``n`` whatever the division did.
    """
    q = ops.floor(t / n)
    q = ops.where(q * n > t, q - 1.0, q)
    return ops.where((q + 1.0) * n <= t, q + 1.0, q)


class ScalarOps:
    """Python-float implementations: no NumPy call on the per-step path."""

    pi = math.pi
    huge = sys.float_info.max
    floor = staticmethod(math.floor)
    exp = staticmethod(math.exp)
    log = staticmethod(math.log)
    cos = staticmethod(math.cos)
    sqrt = staticmethod(math.sqrt)
    minimum = staticmethod(min)
    maximum = staticmethod(max)

    @staticmethod
    def where(cond, a, b):
        return a if cond else b

    @staticmethod
    def clip(x, lo, hi):
        return lo if x < lo else hi if x > hi else x

    @staticmethod
    def count_le(boundaries: Sequence[float], t):
        return bisect.bisect_right(boundaries, t)

    @staticmethod
    def take(table, index):
        return table[int(index)]

    @staticmethod
    def floor_div(t, n):
        return float(t // n)  # Python's float floor division is exact (it works from fmod)

    @staticmethod
    def power(base, exponent):
        try:
            value = base**exponent
        except OverflowError:
            return sys.float_info.max
        return value if value <= sys.float_info.max else sys.float_info.max

    @staticmethod
    def uniform(index, key):
        return hash_uniform(int(index) & MASK32, key, _PyUInt32)


class NumpyOps:
    """NumPy implementations, float64 throughout."""

    pi = np.pi
    huge = sys.float_info.max
    floor = staticmethod(np.floor)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    cos = staticmethod(np.cos)
    sqrt = staticmethod(np.sqrt)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    where = staticmethod(np.where)
    clip = staticmethod(np.clip)

    @staticmethod
    def count_le(boundaries, t):
        return np.searchsorted(np.asarray(boundaries, dtype=np.float64), t, side="right")

    @staticmethod
    def take(table, index):
        return np.asarray(table, dtype=np.float64)[np.asarray(index).astype(np.int64)]

    @staticmethod
    def floor_div(t, n):
        return np.floor_divide(t, float(n))

    @staticmethod
    def power(base, exponent):
        with np.errstate(over="ignore"):
            return np.minimum(np.power(base, exponent), sys.float_info.max)

    @staticmethod
    def uniform(index, key):
        x = np.asarray(index, dtype=np.float64).astype(np.int64).astype(np.uint32)
        with np.errstate(over="ignore"):
            return hash_uniform(x, key, _NpUInt32)


SCALAR = ScalarOps()
NUMPY = NumpyOps()


def saturate(x, ops):
    """``x`` capped at the namespace's largest finite float (an overflowed product is inf)."""
    return ops.minimum(x, ops.huge)


# --------------------------------------------------------------------------------------------
# Registry and config

REGISTRY: dict[str, type[Configurable]] = {}

# The config path of the value being built by from_config ("warmup.base"), so that a nested
# field's error names its full path; None outside from_config (the type name is used then).
_PATH: contextvars.ContextVar[str | None] = contextvars.ContextVar("lrlab_path", default=None)


def register(name: str):
    """Class decorator: make a frozen dataclass buildable from ``{"type": name, ...}``."""

    def decorate(cls):
        if name in REGISTRY:
            raise RuntimeError(f"config type {name!r} registered twice")
        cls.type_name = name
        REGISTRY[name] = cls
        return cls

    return decorate


def _init_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _field_to_config(value: Any) -> Any:
    if isinstance(value, Configurable):
        return value.to_config()
    if isinstance(value, tuple):
        return [_field_to_config(v) for v in value]
    return value


def _field_from_config(value: Any, where: str) -> Any:
    if isinstance(value, Mapping) and "type" in value:
        return from_config(value, where)
    if isinstance(value, list | tuple):
        return tuple(_field_from_config(v, validate.field(where, i)) for i, v in enumerate(value))
    return value


class Configurable:
    """A frozen dataclass that round-trips through a plain ``{"type": ...}`` dict."""

    type_name: ClassVar[str] = ""
    #: One canonical example config of this type (docs, test tables, ``lrlab schedules``).
    example: ClassVar[dict[str, Any] | None] = None

    def to_config(self) -> dict[str, Any]:
        """The plain dict (JSON / TOML-able) that :func:`from_config` turns back into ``self``.

        Fields left at ``None`` are omitted: TOML has no null, and the default restores them.
        """
        config: dict[str, Any] = {"type": self.type_name}
        for f in _init_fields(type(self)):
            value = getattr(self, f.name)
            if value is not None:
                config[f.name] = _field_to_config(value)
        return config


def _config_class(config: Any, where: str | None) -> type[Configurable]:
    type_where = validate.field(where or "", "type")
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"{where + ' ' if where else ''}must be a dict with a 'type' key (a config), "
            f"got {validate.describe(config)}"
        )
    if "type" not in config:
        raise ConfigError(
            f"{where + ': ' if where else ''}config has no 'type' key; "
            f"allowed types: {', '.join(sorted(REGISTRY))}"
        )
    name = config["type"]
    if not isinstance(name, str) or name not in REGISTRY:  # also a list or a dict
        shown = name if isinstance(name, str) else validate.describe(name)
        error = unknown_name_error("schedule type", shown, REGISTRY)
        raise ConfigError(f"{type_where}: {error}" if where else str(error))
    return REGISTRY[name]


def _check_keys(config, name: str, where: str | None, fields, required) -> None:
    """Every key is a field of type ``name`` and every required field is there."""
    at = f"{where}: " if where else ""
    for key in config:
        if key != "type" and key not in fields:
            shown = key if isinstance(key, str) else validate.describe(key)
            raise ConfigError(f"{at}{unknown_name_error(f'key for {name!r}', shown, fields)}")
    missing = [key for key in required if key not in config]
    if missing:
        names = ", ".join(map(repr, missing))
        raise ConfigError(f"{at or name + ': '}missing required key(s) {names}")


def from_config(config: Mapping[str, Any], where: str | None = None):
    """Build a schedule (or policy) from a plain dict with a ``type`` key. Never executes code.

    ``where`` is the config path of ``config`` inside a larger one (errors name it in full).

    >>> from_config({"type": "cosine", "lr": 0.1, "total": 100})(50)
    0.05
    """
    if isinstance(config, Configurable):
        return config
    if where is None and _PATH.get() is None:
        validate.depth(config, "config")
    cls = _config_class(config, where)
    if hasattr(cls, "from_config_dict"):  # a type that reads its own config (a policy)
        return cls.from_config_dict(config)
    prefix = where or cls.type_name
    fields = {f.name: f for f in _init_fields(cls)}
    required = [
        f.name
        for f in fields.values()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    _check_keys(config, cls.type_name, where, fields, required)
    kwargs = {
        key: _field_from_config(value, validate.field(prefix, key))
        for key, value in config.items()
        if key != "type"
    }
    token = _PATH.set(prefix)
    try:
        return cls(**kwargs)
    finally:
        _PATH.reset(token)


# --------------------------------------------------------------------------------------------
# Validation of fields, through lrlab.validate, each error naming the field's full path


def where(obj, name: str) -> str:
    """The config path of field ``name`` of ``obj`` ("warmup.base.lr", or "cosine.lr")."""
    return validate.field(_PATH.get() or obj.type_name, name)


def _set(obj, name, value) -> None:
    object.__setattr__(obj, name, value)


def check_float(
    obj, name: str, *, lo=None, hi=None, lo_open=False, hi_open=False, allow_none=False
) -> None:
    """Validate ``obj.name`` as a finite real in a range, normalise it to ``float``."""
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    number = validate.real(value, where(obj, name), lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)
    _set(obj, name, number)


def check_int(obj, name: str, *, lo: int = 0, hi: int | None = MAX_STEP, allow_none=False) -> None:
    """Validate ``obj.name`` as an integer in ``[lo, hi]`` (an integral float is accepted)."""
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    _set(obj, name, validate.integer(value, where(obj, name), lo=lo, hi=hi))


def check_bool(obj, name: str) -> None:
    validate.boolean(getattr(obj, name), where(obj, name))


def check_choice(obj, name: str, choices: Sequence[str]) -> None:
    validate.choice(getattr(obj, name), where(obj, name), choices)


def _schedule(value: Any, path: str) -> Schedule:
    if isinstance(value, Mapping):
        value = from_config(value, path)
    if not isinstance(value, Schedule):
        raise ConfigError(
            f"{path} must be a schedule (a dict with a 'type' key), got {validate.describe(value)}"
        )
    return value


def check_schedule(obj, name: str) -> None:
    """``obj.name`` as a :class:`Schedule` (a config dict is built, at its own path)."""
    _set(obj, name, _schedule(getattr(obj, name), where(obj, name)))


def check_schedules(obj, name: str) -> None:
    """``obj.name`` as a non-empty tuple of schedules."""
    items = validate.sequence(getattr(obj, name), where(obj, name), _schedule, min_len=1)
    _set(obj, name, items)


def check_steps(obj, name: str, *, lo: int = 0, strict: bool = True) -> None:
    """``obj.name`` as an increasing tuple of integer steps (milestones, boundaries)."""
    path = where(obj, name)

    def step(value, at):
        return validate.integer(value, at, lo=lo, hi=MAX_STEP)

    steps = validate.sequence(getattr(obj, name), path, step)
    for i in range(1, len(steps)):
        if steps[i] < steps[i - 1] or (strict and steps[i] == steps[i - 1]):
            order = "strictly increasing" if strict else "sorted (non-decreasing)"
            raise ConfigError(f"{path} must be {order}, got {validate.describe(list(steps))}")
    _set(obj, name, steps)


def check_order(obj, low: str, high: str) -> None:
    """``obj.low <= obj.high`` (both already validated numbers, ``high`` possibly None)."""
    lo_value, hi_value = getattr(obj, low), getattr(obj, high)
    if hi_value is not None and lo_value > hi_value:
        raise ConfigError(
            f"{where(obj, high)} must be >= {where(obj, low)}, "
            f"got {high}={hi_value!r} < {low}={lo_value!r}"
        )


# --------------------------------------------------------------------------------------------
# The schedule value type


def cached(obj, name: str, value):
    """Store a derived value on a frozen schedule (a non-field attribute) and return it."""
    object.__setattr__(obj, name, value)
    return value


class Schedule(Configurable):
    """An immutable learning-rate schedule: ``lr = schedule(step)``, closed form, no state.

    Subclasses are frozen dataclasses that implement :meth:`evaluate` once, against ``ops``.
    Evaluating costs time linear in the size of the config: a composite evaluates each child
    at most once per call (and only the active one on the scalar path).
    """

    def evaluate(self, t, ops):
        """The learning rate at step(s) ``t`` (float or array), computed with namespace ``ops``."""
        raise NotImplementedError

    @property
    def horizon(self) -> int | None:
        """The step at which a decaying schedule reaches its end value; ``None`` if unbounded."""
        return None

    def __call__(self, step) -> float:
        return float(self.evaluate(float(step), SCALAR))

    def values(self, steps) -> np.ndarray:
        """Vectorised evaluation: ``steps`` is an int (0..steps-1) or an array of step counts."""
        t = (
            np.arange(steps, dtype=np.float64)
            if np.ndim(steps) == 0
            else np.asarray(steps, np.float64)
        )
        with np.errstate(over="ignore"):  # an overflowing product saturates (see saturate)
            out = np.asarray(self.evaluate(t, NUMPY), dtype=np.float64)
        return np.array(np.broadcast_to(out, t.shape))

    # composition sugar; each returns a new value, ``self`` is unchanged
    def __mul__(self, factor: float) -> Schedule:
        from lrlab.schedules.compose import Scale

        return Scale(base=self, factor=factor)

    __rmul__ = __mul__

    def with_warmup(self, steps: int, start_lr: float = 0.0) -> Schedule:
        from lrlab.schedules.compose import Warmup

        return Warmup(base=self, steps=steps, start_lr=start_lr)

    def clamped(self, min_lr: float = 0.0, max_lr: float | None = None) -> Schedule:
        from lrlab.schedules.compose import Clamp

        return Clamp(base=self, min_lr=min_lr, max_lr=max_lr)
