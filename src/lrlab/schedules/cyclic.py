"""CLR: cyclical learning rates (Smith, arXiv:1506.01186), the three policies of the paper."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from lrlab.schedules.base import (
    Schedule,
    cached,
    check_choice,
    check_float,
    check_int,
    register,
)

#: The CLR policies, in one place (the range test and the CLI use this tuple too).
CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@register("cyclic")
@dataclass(frozen=True)
class Cyclic(Schedule):
    """Cyclical learning rate, per iteration ``t`` (Smith, arXiv:1506.01186, section 3.1)::

        total = up + down ; ratio = up / total
        cycle = floor(1 + t / total) ; s = 1 + t / total - cycle
        h = s / ratio if s <= ratio else (s - 1) / (ratio - 1)
        lr = base_lr + (max_lr - base_lr) * h * scale
        triangular: scale = 1 ; triangular2: scale = 1 / 2 ** (cycle - 1) ; exp_range: gamma ** t

    The same arithmetic as ``torch.optim.lr_scheduler.CyclicLR(..., cycle_momentum=False)``.
    ``step_size_down`` defaults to ``step_size_up`` (a symmetric triangle). ``max_lr`` may be
    below ``base_lr``: the cycle then descends first, the shape torch's ``cycle_momentum`` gives
    momentum (``base_lr=max_momentum, max_lr=base_momentum``); values stay between the two.

    >>> from lrlab.schedules import Cyclic
    >>> c = Cyclic(base_lr=1.0, max_lr=5.0, step_size_up=4)
    >>> [c(t) for t in range(11)]
    [1.0, 2.0, 3.0, 4.0, 5.0, 4.0, 3.0, 2.0, 1.0, 2.0, 3.0]
    >>> c2 = Cyclic(base_lr=0.0, max_lr=1.0, step_size_up=1, mode="triangular2")
    >>> [c2(t) for t in range(7)]
    [0.0, 1.0, 0.0, 0.5, 0.0, 0.25, 0.0]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "cyclic",
        "mode": "triangular2",
        "base_lr": 0.001,
        "max_lr": 0.006,
        "step_size_up": 20,
        "step_size_down": 30,
    }

    base_lr: float
    max_lr: float
    step_size_up: int = 2000
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    _total: float = field(init=False, repr=False, compare=False, default=0.0)
    _ratio: float = field(init=False, repr=False, compare=False, default=0.0)
    _height: float = field(init=False, repr=False, compare=False, default=0.0)

    def __post_init__(self):
        check_float(self, "base_lr", lo=0)
        check_float(self, "max_lr", lo=0)
        check_int(self, "step_size_up", lo=1)
        if self.step_size_down is None:
            object.__setattr__(self, "step_size_down", self.step_size_up)
        check_int(self, "step_size_down", lo=1)
        check_choice(self, "mode", CYCLIC_MODES)
        check_float(self, "gamma", lo=0, lo_open=True, hi=1)
        # derived once: evaluate runs on every optimizer step (benchmarks/step_overhead.py)
        total = cached(self, "_total", float(self.step_size_up + (self.step_size_down or 0)))
        cached(self, "_ratio", self.step_size_up / total)
        cached(self, "_height", self.max_lr - self.base_lr)

    def evaluate(self, t, ops):
        ratio, x = self._ratio, 1.0 + t / self._total
        cycle = ops.floor(x)
        s = x - cycle
        h = ops.where(s <= ratio, s / ratio, (s - 1) / (ratio - 1))
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            # = 1 / 2 ** (cycle - 1), but underflows to 0 where torch's form overflows
            scale = ops.power(0.5, cycle - 1)
        else:
            scale = ops.power(self.gamma, t)
        return self.base_lr + self._height * h * scale
