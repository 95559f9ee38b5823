"""torch's one-cycle and factor schedulers as schedules: ``onecycle`` (with the matching
``onecycle_momentum``), ``linear`` (``LinearLR``) and ``constant_factor`` (``ConstantLR``).

Parameter names are torch's; the value at step ``t`` is torch's after ``t`` calls of ``step()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from lrlab.errors import ConfigError
from lrlab.schedules.base import (
    Schedule,
    check_bool,
    check_choice,
    check_float,
    check_int,
    register,
    where,
)

ANNEAL_STRATEGIES = ("cos", "linear")


def _anneal(start, end, pct, strategy, ops):
    """torch's ``_annealing_cos`` / ``_annealing_linear``, in the same arithmetic order."""
    if strategy == "cos":
        return end + (start - end) / 2.0 * (ops.cos(ops.pi * pct) + 1.0)
    return (end - start) * pct + start


class _OneCycleShape(Schedule):
    """The phases of torch's ``OneCycleLR``: ``(end_step, start_value, end_value)`` each, the
    end steps ``pct_start * total_steps - 1`` (and ``2 * pct_start * total_steps - 2`` with
    three phases) and ``total_steps - 1``. Past the last phase the final value holds."""

    total_steps: int
    pct_start: float
    anneal_strategy: str
    three_phase: bool

    def _check_shape(self) -> None:
        check_int(self, "total_steps", lo=2)
        check_float(self, "pct_start", lo=0, hi=1)
        check_choice(self, "anneal_strategy", ANNEAL_STRATEGIES)
        check_bool(self, "three_phase")
        ends = self._end_steps()
        lengths = [b - a for a, b in zip((0.0, *ends), ends)]
        if min(lengths) <= 0:
            rule = "in (1 / total_steps, (total_steps + 1) / (2 * total_steps))"
            if not self.three_phase:
                rule = "in (1 / total_steps, 1)"
            raise ConfigError(
                f"{where(self, 'pct_start')} must be {rule} so that every phase has a length "
                f"(torch divides by it), got {self.pct_start!r} with total_steps={self.total_steps}"
            )

    def _end_steps(self) -> tuple[float, ...]:
        warm = float(self.pct_start * self.total_steps) - 1
        if self.three_phase:
            return (warm, float(2 * self.pct_start * self.total_steps) - 2, self.total_steps - 1)
        return (warm, self.total_steps - 1)

    def _values(self) -> tuple[float, ...]:
        """The values at the phase boundaries: start, then the end of each phase."""
        raise NotImplementedError

    def evaluate(self, t, ops):
        ends, values = self._end_steps(), self._values()
        starts = (0.0, *ends[:-1])
        result = None
        for i in reversed(range(len(ends))):
            pct = (t - starts[i]) / (ends[i] - starts[i])
            if i == len(ends) - 1:
                pct = ops.clip(pct, 0.0, 1.0)
            value = _anneal(values[i], values[i + 1], pct, self.anneal_strategy, ops)
            result = value if result is None else ops.where(t <= ends[i], value, result)
        return result

    @property
    def horizon(self):
        return self.total_steps - 1


@register("onecycle")
@dataclass(frozen=True)
class OneCycle(_OneCycleShape):
    """The 1cycle policy (Smith & Topin, arXiv:1708.07120) as torch's ``OneCycleLR``: from
    ``max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start`` of ``total_steps``, then
    down to ``max_lr / div_factor / final_div_factor`` (``three_phase``: back to the initial rate
    first, then down). ``anneal_strategy`` is ``"cos"`` or ``"linear"``.

    >>> from lrlab.schedules import OneCycle
    >>> s = OneCycle(max_lr=1.0, total_steps=10, pct_start=0.5, anneal_strategy="linear",
    ...              div_factor=4.0, final_div_factor=2.5)
    >>> [round(s(t), 6) for t in (0, 2, 4, 9)]
    [0.25, 0.625, 1.0, 0.1]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "onecycle",
        "max_lr": 0.1,
        "total_steps": 200,
        "pct_start": 0.3,
    }

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False

    def __post_init__(self):
        check_float(self, "max_lr", lo=0)
        check_float(self, "div_factor", lo=0, lo_open=True)
        check_float(self, "final_div_factor", lo=0, lo_open=True)
        if not math.isfinite(self.max_lr / self.div_factor / self.final_div_factor):
            raise ConfigError(
                f"{where(self, 'div_factor')} is too small: max_lr / div_factor overflows"
            )
        self._check_shape()

    def _values(self):
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        if self.three_phase:
            return (initial, self.max_lr, initial, final)
        return (initial, self.max_lr, final)


@register("onecycle_momentum")
@dataclass(frozen=True)
class OneCycleMomentum(_OneCycleShape):
    """The momentum that torch's ``OneCycleLR`` cycles with the rate: ``max_momentum`` down to
    ``base_momentum`` while the rate rises, back up while it falls (and held at
    ``max_momentum`` in the third phase of ``three_phase``). Give it the same ``total_steps``,
    ``pct_start``, ``anneal_strategy`` and ``three_phase`` as the ``onecycle`` it goes with.

    >>> from lrlab.schedules import OneCycleMomentum
    >>> m = OneCycleMomentum(total_steps=10, pct_start=0.5, anneal_strategy="linear")
    >>> [round(m(t), 6) for t in (0, 4, 9)]
    [0.95, 0.85, 0.95]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "onecycle_momentum",
        "total_steps": 200,
        "pct_start": 0.3,
    }

    total_steps: int
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    three_phase: bool = False

    def __post_init__(self):
        check_float(self, "base_momentum", lo=0)
        check_float(self, "max_momentum", lo=0)
        self._check_shape()

    def _values(self):
        low, high = self.base_momentum, self.max_momentum
        return (high, low, high, high) if self.three_phase else (high, low, high)


@register("linear")
@dataclass(frozen=True)
class Linear(Schedule):
    """``lr(t) = lr * (start_factor + (end_factor - start_factor) * min(t, total_iters) /
    total_iters)`` (torch ``LinearLR``, its closed form).

    >>> from lrlab.schedules import Linear
    >>> s = Linear(lr=1.0, start_factor=0.5, end_factor=1.0, total_iters=4)
    >>> [s(t) for t in range(6)]
    [0.5, 0.625, 0.75, 0.875, 1.0, 1.0]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "linear",
        "lr": 0.1,
        "start_factor": 0.1,
        "total_iters": 100,
    }

    lr: float
    start_factor: float = 1.0 / 3
    end_factor: float = 1.0
    total_iters: int = 5

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_float(self, "start_factor", lo=0, lo_open=True, hi=1)
        check_float(self, "end_factor", lo=0, hi=1)
        check_int(self, "total_iters", lo=1)

    @property
    def horizon(self):
        return self.total_iters

    def evaluate(self, t, ops):
        progress = ops.minimum(t, float(self.total_iters)) / self.total_iters
        return self.lr * (self.start_factor + (self.end_factor - self.start_factor) * progress)


@register("constant_factor")
@dataclass(frozen=True)
class ConstantFactor(Schedule):
    """``lr(t) = lr * factor`` for ``t < total_iters``, then ``lr`` (torch ``ConstantLR``).

    >>> from lrlab.schedules import ConstantFactor
    >>> s = ConstantFactor(lr=1.0, factor=0.5, total_iters=2)
    >>> [s(t) for t in range(4)]
    [0.5, 0.5, 1.0, 1.0]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "constant_factor",
        "lr": 0.1,
        "factor": 0.25,
        "total_iters": 50,
    }

    lr: float
    factor: float = 1.0 / 3
    total_iters: int = 5

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_float(self, "factor", lo=0, hi=1)
        check_int(self, "total_iters", lo=0)

    @property
    def horizon(self):
        return self.total_iters

    def evaluate(self, t, ops):
        return ops.where(t < self.total_iters, self.lr * self.factor, self.lr + 0.0 * t)
