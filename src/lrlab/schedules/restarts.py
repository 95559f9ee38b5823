"""SGDR: cosine annealing with warm restarts (Loshchilov & Hutter, arXiv:1608.03983)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lrlab.errors import ConfigError
from lrlab.schedules.base import (
    MAX_STEP,
    Schedule,
    check_float,
    check_int,
    register,
    where,
)

#: The smallest ``period_mult`` above 1: closer to 1, the period starts up to 2**53 steps would
#: not fit a table of reasonable size (use ``period_mult = 1``, the periods barely grow).
MIN_GROWING_MULT = 1.001
# a float64 period start this close (relative) to an integer is that integer: the multiplier
# 1.8 is stored as 1.8000000000000000444, which must not move the restart off step 14
_SNAP = 64 * 2.0**-52


def _snap(start: float) -> float:
    nearest = round(start)
    return float(nearest) if abs(start - nearest) <= _SNAP * max(start, 1.0) else start


@functools.lru_cache(maxsize=64)
def period_starts(period: int, mult: float, periods: int | None) -> tuple[float, ...]:
    """The steps at which periods 0, 1, ... start (``period * (mult**n - 1) / (mult - 1)``),
    each within a few ulps of the exact value and exactly an integer where that is one, up to
    the first start beyond :data:`MAX_STEP` (or the end of period ``periods``)."""
    starts = [0.0]
    n = 1
    while starts[-1] <= MAX_STEP and (periods is None or n <= periods + 1):
        starts.append(_snap(period * (mult**n - 1.0) / (mult - 1.0)))
        n += 1
    return tuple(starts)


@register("cosine_restarts")
@dataclass(frozen=True)
class CosineRestarts(Schedule):
    """SGDR: cosine from a peak to ``end_lr`` over a period, then restart; each period is
    ``period_mult`` times the last (torch ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)``).

    With ``n`` the index of the current period, ``start_n = period * (mult**n - 1) / (mult - 1)``
    (``period * n`` when ``mult == 1``), ``T_n = period * mult**n``, ``t_cur = t - start_n`` and
    the peak ``lr_n = lr * restart_decay**n`` (timm's ``cycle_decay``; Keras' ``m_mul``)::

        lr(t) = end_lr + (lr_n - end_lr) * (1 + cos(pi * t_cur / T_n)) / 2

    Every period that starts on an integer step (as exact arithmetic on the decimal
    ``period_mult`` says) restarts there exactly. With ``max_restarts`` set, the schedule holds
    ``end_lr`` after the end of period ``max_restarts`` (timm's ``cycle_limit = max_restarts + 1``).

    >>> from lrlab.schedules import CosineRestarts
    >>> s = CosineRestarts(lr=1.0, period=2, period_mult=2)
    >>> [s(t) for t in range(8)]
    [1.0, 0.5, 1.0, 0.8535533905932737, 0.5, 0.14644660940672627, 1.0, 0.9619397662556434]
    >>> CosineRestarts(lr=1.0, period=3, period_mult=1.8)(3)
    1.0
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "cosine_restarts",
        "lr": 0.1,
        "period": 20,
        "period_mult": 2.0,
    }

    lr: float
    period: int
    end_lr: float = 0.0
    period_mult: float = 1.0
    restart_decay: float = 1.0
    max_restarts: int | None = None
    _starts: tuple[float, ...] = field(init=False, repr=False, compare=False, default=())
    _lengths: tuple[float, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_float(self, "end_lr", lo=0)
        check_int(self, "period", lo=1)
        check_float(self, "period_mult", lo=1)
        if 1.0 < self.period_mult < MIN_GROWING_MULT:
            raise ConfigError(
                f"{where(self, 'period_mult')} must be 1 or >= {MIN_GROWING_MULT}, "
                f"got {self.period_mult!r}"
            )
        check_float(self, "restart_decay", lo=0, hi=1)
        check_int(self, "max_restarts", lo=0, allow_none=True)
        if self.period_mult > 1.0:
            starts = period_starts(self.period, self.period_mult, self.max_restarts)
            lengths = [b - a for a, b in zip(starts, starts[1:])]
            # the period after the table (past 2**53 steps, or past the last restart: unused)
            lengths.append(lengths[-1] * self.period_mult if self.max_restarts is None else 1.0)
            object.__setattr__(self, "_starts", starts)
            object.__setattr__(self, "_lengths", tuple(lengths))

    @property
    def horizon(self):
        if self.max_restarts is None:
            return None
        if self.period_mult == 1.0:
            return self.period * (self.max_restarts + 1)
        return math.ceil(self._starts[self.max_restarts + 1])

    def _position(self, t, ops):
        """(period index n, t - start_n, T_n); past the last period, t_cur is T_n."""
        if self.period_mult == 1.0:
            n = ops.floor_div(t, self.period)
            if self.max_restarts is not None:
                n = ops.minimum(n, float(self.max_restarts))
            # + 0.0, not float(): the boundary tests pass a column of periods, one compile for all
            length = self.period + 0.0
            return n, ops.minimum(t - n * self.period, length), length
        n = ops.minimum(ops.count_le(self._starts, t) - 1, len(self._lengths) - 1)
        if self.max_restarts is not None:
            n = ops.minimum(n, self.max_restarts)
        length = ops.take(self._lengths, n)
        return n, ops.clip(t - ops.take(self._starts, n), 0.0, length), length

    def evaluate(self, t, ops):
        n, t_cur, length = self._position(t, ops)
        peak = self.lr * ops.power(self.restart_decay, n)
        weight = (1.0 + ops.cos(ops.pi * t_cur / length)) / 2.0  # in [0, 1]: never overflows
        return self.end_lr + (peak - self.end_lr) * weight
