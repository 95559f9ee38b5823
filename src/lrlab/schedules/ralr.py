"""RALR: random amplification of a base schedule (Deng et al., doi:10.3390/app12010268).

The random numbers are a pure function of ``(seed, draw index, stream)``: an integer hash, not an
RNG with state. Every rank and every resumed run computes the same factor for the same draw, and
there is nothing to checkpoint. The hash itself is the :meth:`~lrlab.schedules.base.Ops.uniform`
primitive, so every backend computes it in its own unsigned 32-bit arithmetic.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

from lrlab.schedules.base import (
    MASK32,
    SCALAR,
    Schedule,
    check_float,
    check_int,
    check_order,
    check_schedule,
    mix32,
    register,
    saturate,
)
from lrlab.schedules.base import _PyUInt32 as _PY

_STREAM_DECIDE = 0x2545F491
_STREAM_FACTOR = 0x9E3779B9


@functools.lru_cache(maxsize=256)
def _stream_key(seed: int, stream: int) -> int:
    return mix32((seed * 0x9E3779B1 + stream) & MASK32, _PY)


def uniform(seed: int, index, stream: int, ops):
    """A uniform number in [0, 1) that depends only on ``(seed, index, stream)``.

    24 bits, so the value is exact in float32 too and every backend makes the same decisions.

    >>> from lrlab.schedules.base import SCALAR
    >>> uniform(0, 7, _STREAM_DECIDE, SCALAR) == uniform(0, 7, _STREAM_DECIDE, SCALAR)
    True
    """
    return ops.uniform(index, _stream_key(seed, stream))


def _factor(seed, draw, p, low, high, ops):
    amplified = uniform(seed, draw, _STREAM_DECIDE, ops) < p
    u = low + (high - low) * uniform(seed, draw, _STREAM_FACTOR, ops)
    return ops.where(amplified, u, 1.0)


@functools.lru_cache(maxsize=1024)
def _scalar_factor(seed, draw, p, low, high):
    return _factor(seed, draw, p, low, high, SCALAR)


@register("ralr")
@dataclass(frozen=True)
class RandomAmplify(Schedule):
    """Random amplification around ``base`` (Deng et al., doi:10.3390/app12010268, Algorithm 1).
    With ``e = floor(t / period)`` the draw index (an epoch when ``period`` is the number of steps
    per epoch)::

        lr(t) = base(t) * u_e   if r_e < p,   u_e ~ Uniform(low, high)
        lr(t) = base(t)         otherwise

    ``r_e`` and ``u_e`` are pure functions of ``(seed, e)``. The factor is constant within a
    period and never carries into the next one; ``p = 0`` never amplifies, ``p = 1`` always does.
    Draw indices wrap modulo 2**32 (after 2**32 periods the draws repeat).

    >>> from lrlab.schedules import Constant, RandomAmplify
    >>> r = RandomAmplify(base=Constant(lr=0.1), p=1.0, low=2.0, high=2.0)
    >>> round(r(5), 12)
    0.2
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "ralr",
        "base": {"type": "multistep", "lr": 0.1, "milestones": [150, 225]},
        "p": 0.5,
        "low": 1.0,
        "high": 3.0,
        "period": 1,
        "seed": 0,
    }

    base: Schedule
    p: float = 0.5
    low: float = 1.0
    high: float = 3.0
    period: int = 1
    seed: int = 0

    def __post_init__(self):
        check_schedule(self, "base")
        check_float(self, "p", lo=0, hi=1)
        check_float(self, "low", lo=0)
        check_float(self, "high", lo=0)
        check_order(self, "low", "high")
        check_int(self, "period", lo=1)
        check_int(self, "seed", lo=0, hi=MASK32)

    @property
    def horizon(self):
        return self.base.horizon

    def factor(self, t, ops):
        """The amplification factor at step(s) ``t`` (1.0 where the draw says no)."""
        draw = ops.floor_div(t, self.period)
        if ops is SCALAR:  # a draw lasts a whole period: reuse it rather than hash every step
            return _scalar_factor(self.seed, draw, self.p, self.low, self.high)
        return _factor(self.seed, draw, self.p, self.low, self.high, ops)

    def evaluate(self, t, ops):
        return saturate(self.base.evaluate(t, ops) * self.factor(t, ops), ops)


def ralr_paper(
    total: int,
    *,
    steps_per_epoch: int = 1,
    lr: float = 0.1,
    seed: int = 0,
    p: float = 0.5,
    low: float = 1.0,
    high: float = 3.0,
) -> RandomAmplify:
    """The paper's set-up: multi-step base (``lr``, x0.1 at 50% and 75% of ``total`` epochs),
    one draw per epoch. Steps are iterations when ``steps_per_epoch > 1``.

    >>> s = ralr_paper(300)
    >>> s.base.milestones, s.period
    ((150, 225), 1)
    """
    from lrlab.schedules.basic import paper_multistep

    base = paper_multistep(total, lr=lr, steps_per_epoch=steps_per_epoch)
    return RandomAmplify(base=base, p=p, low=low, high=high, period=steps_per_epoch, seed=seed)
