"""Schedules from Python callables, as torch's ``LambdaLR`` and ``MultiplicativeLR`` take them.

Such a schedule has no config (a callable is code, and configs never carry code): ``to_config``
raises a one-line :class:`~lrlab.errors.ConfigError`, and it cannot be exported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrlab.errors import ConfigError
from lrlab.schedules.base import NUMPY, SCALAR, Schedule


@dataclass(frozen=True, eq=False)
class FunctionSchedule(Schedule):
    """``lr(t) = lr * fn(t)`` (``LambdaLR``), or with ``multiplicative`` the running product
    ``lr * fn(1) * ... * fn(t)`` (``MultiplicativeLR``: no closed form, so step ``t`` costs
    ``O(t)`` the first time it is reached; the products are kept)."""

    fn: Callable[[int], float]
    lr: float = 1.0
    multiplicative: bool = False
    _products: list[float] = field(init=False, repr=False, default_factory=lambda: [1.0])

    type_name = "function"

    def __post_init__(self):
        if not callable(self.fn):
            raise ConfigError(f"from_function: fn must be callable, got {self.fn!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr >= 0):
            raise ConfigError(f"from_function: lr must be a finite number >= 0, got {self.lr!r}")

    def to_config(self) -> dict[str, Any]:
        raise ConfigError(
            f"a schedule made by from_function({getattr(self.fn, '__name__', 'fn')}) has no config: "
            "it wraps a Python callable; use a config type, or keep the callable in code"
        )

    def _factor(self, step: int) -> float:
        value = self.fn(step)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ConfigError(
                f"from_function: fn({step}) returned {value!r}; it must give a finite number >= 0"
            )
        return float(value)

    def _scalar(self, t: float) -> float:
        step = int(t)
        if not self.multiplicative:
            return self.lr * self._factor(step)
        products = self._products
        while len(products) <= step:
            products.append(min(products[-1] * self._factor(len(products)), SCALAR.huge))
        return self.lr * products[step]

    def evaluate(self, t, ops):
        if ops is SCALAR:
            return self._scalar(t)
        if ops is NUMPY:
            flat = np.asarray(t, dtype=np.float64)
            return np.array([self._scalar(v) for v in flat.ravel()]).reshape(flat.shape)
        raise ConfigError(
            "a schedule made by from_function cannot be exported: it wraps a Python callable"
        )


def from_function(
    fn: Callable[[int], float], *, lr: float = 1.0, multiplicative: bool = False
) -> FunctionSchedule:
    """A schedule from a callable of the step: ``lr * fn(t)`` as torch's ``LambdaLR(opt,
    fn)`` gives with base rate ``lr``, or with ``multiplicative=True`` as ``MultiplicativeLR``.

    >>> from lrlab.schedules import from_function
    >>> s = from_function(lambda t: 0.5 ** t, lr=0.1)
    >>> [s(t) for t in range(3)]
    [0.1, 0.05, 0.025]
    >>> m = from_function(lambda t: 0.5, lr=1.0, multiplicative=True)
    >>> [m(t) for t in range(4)]
    [1.0, 0.5, 0.25, 0.125]
    """
    return FunctionSchedule(fn=fn, lr=lr, multiplicative=multiplicative)
