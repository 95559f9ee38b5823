"""The schedule value type, its config registry, and the array namespaces formulas are written in.

A schedule's formula is written once, in :meth:`Schedule.evaluate`, against a small namespace
``ops`` of math functions. The same code then runs on Python floats (``schedule(step)``, the fast
path a training loop uses), on NumPy arrays (``schedule.values(steps)``, for plots and exports) and
on JAX arrays (the optax export), so the three can never disagree about the formula.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from lrlab.errors import ConfigError, unknown_name_error

# --------------------------------------------------------------------------------------------
# Array namespaces


class ScalarOps:
    """Python-float implementations: no NumPy call on the per-step path."""

    pi = math.pi
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
        """Number of boundaries <= t."""
        return bisect.bisect_right(boundaries, t)

    @staticmethod
    def to_uint32(x):
        return int(x) & 0xFFFFFFFF

    @staticmethod
    def to_float(x):
        return float(x)


class NumpyOps:
    """NumPy implementations, float64 throughout."""

    pi = np.pi
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
    def to_uint32(x):
        return np.asarray(x).astype(np.int64).astype(np.uint32)

    @staticmethod
    def to_float(x):
        return np.asarray(x, dtype=np.float64)


SCALAR = ScalarOps()
NUMPY = NumpyOps()


# --------------------------------------------------------------------------------------------
# Registry and config

REGISTRY: dict[str, type] = {}


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


def _field_from_config(value: Any) -> Any:
    if isinstance(value, Mapping) and "type" in value:
        return from_config(value)
    if isinstance(value, list | tuple):
        return tuple(_field_from_config(v) for v in value)
    return value


class Configurable:
    """A frozen dataclass that round-trips through a plain ``{"type": ...}`` dict."""

    type_name: ClassVar[str] = ""

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


def from_config(config: Mapping[str, Any]):
    """Build a schedule (or policy) from a plain dict with a ``type`` key. Never executes code.

    >>> from_config({"type": "cosine", "lr": 0.1, "total": 100})(50)
    0.05
    """
    if isinstance(config, Configurable):
        return config
    if not isinstance(config, Mapping):
        raise ConfigError(f"a config must be a dict with a 'type' key, got {type(config).__name__}")
    if "type" not in config:
        raise ConfigError(f"config has no 'type' key; allowed types: {', '.join(sorted(REGISTRY))}")
    name = config["type"]
    cls = REGISTRY.get(name)
    if cls is None:
        raise unknown_name_error("schedule type", name, REGISTRY)
    if hasattr(cls, "from_config_dict"):  # a type that reads its own config (a policy)
        return cls.from_config_dict(config)
    fields = {f.name: f for f in _init_fields(cls)}
    kwargs = {}
    for key, value in config.items():
        if key == "type":
            continue
        if key not in fields:
            raise unknown_name_error(f"key for {name!r}", key, fields)
        kwargs[key] = _field_from_config(value)
    missing = [
        f.name
        for f in fields.values()
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{name}: missing required key(s) {', '.join(map(repr, missing))}")
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# Validation helpers used by every schedule's __post_init__


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _set(obj, name, value) -> None:
    object.__setattr__(obj, name, value)


def check_float(obj, name: str, *, lo=None, hi=None, lo_open=False, allow_none=False) -> None:
    """Validate ``obj.name`` as a finite real in a range, normalise it to ``float``."""
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    lo_txt = "" if lo is None else (f"> {lo}" if lo_open else f">= {lo}")
    hi_txt = "" if hi is None else f"<= {hi}"
    allowed = " and ".join(t for t in (lo_txt, hi_txt) if t) or "finite"
    where = f"{obj.type_name}.{name}"
    if not _is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number {allowed}, got {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"{where} must be {allowed}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{where} must be {allowed}, got {value!r}")
    _set(obj, name, float(value))


def check_int(obj, name: str, *, lo: int = 0, allow_none=False) -> None:
    """Validate ``obj.name`` as an integer >= lo (a float with an integral value is accepted)."""
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    where = f"{obj.type_name}.{name}"
    if not _is_number(value) or not float(value).is_integer():
        raise ConfigError(f"{where} must be an integer >= {lo}, got {value!r}")
    if value < lo:
        raise ConfigError(f"{where} must be an integer >= {lo}, got {value!r}")
    _set(obj, name, int(value))


def check_choice(obj, name: str, choices: Sequence[str]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise unknown_name_error(f"{obj.type_name}.{name}", value, choices)


def check_schedule(obj, name: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, Mapping):
        value = from_config(value)
        _set(obj, name, value)
    if not isinstance(value, Schedule):
        raise ConfigError(
            f"{obj.type_name}.{name} must be a schedule (a dict with a 'type' key), got {value!r}"
        )


# --------------------------------------------------------------------------------------------
# The schedule value type


class Schedule(Configurable):
    """An immutable learning-rate schedule: ``lr = schedule(step)``, closed form, no state.

    Subclasses are frozen dataclasses that implement :meth:`evaluate` once, against ``ops``.
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
