"""The decaying sequences of "Learning Rate Investigation" (Yang & Huang, University of
Minnesota, 2019): one value per pop, popped once per period (an epoch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lrlab.schedules.base import SCALAR, Schedule, check_choice, check_float, check_int, register

SEQUENCE_KINDS = ("seq1", "seq2", "seq3", "seq4", "seq4_slides", "geometric")


@register("sequence")
@dataclass(frozen=True)
class DecayingSequence(Schedule):
    """The value after ``i`` pops (``i = 0`` is ``lr`` = r0, used in epoch 1)::

        seq1: r0 / (i + 1)
        seq2: r0 / sqrt(i + 1)
        seq3: r0 * 0.9 ** i
        seq4: r0 * (1 - ((i - 1) mod 10) / 10) / (floor((i - 1) / 10) + 1)   # authors' checkpoints
        seq4_slides: as seq4 with floor(i / 10) in the denominator          # as printed on the slides
        geometric: r0 * gamma ** i

    As a schedule it is "update by epoch": one pop every ``period`` steps,
    ``lr(t) = value(floor(t / period))``. With ``length`` set, only that many pops exist and the
    value stays at the last one after them (the authors' code would crash instead).

    >>> from lrlab.schedules import DecayingSequence
    >>> s = DecayingSequence(kind="seq4", lr=1.0)
    >>> [s.value(i) for i in (10, 11, 20, 21)]
    [0.1, 0.5, 0.05, 0.3333333333333333]
    >>> DecayingSequence(kind="seq1", lr=0.01, period=2)(5)
    0.0033333333333333335
    """

    example: ClassVar[dict[str, Any]] = {"type": "sequence", "kind": "seq4", "lr": 0.01}

    kind: str
    lr: float
    period: int = 1
    gamma: float = 0.9
    length: int | None = None

    def __post_init__(self):
        check_choice(self, "kind", SEQUENCE_KINDS)
        check_float(self, "lr", lo=0)
        check_int(self, "period", lo=1)
        check_float(self, "gamma", lo=0, lo_open=True, hi=1)
        check_int(self, "length", lo=0, allow_none=True)

    def value(self, pops) -> float:
        """The learning rate after ``pops`` pops."""
        return float(self._value(float(pops), SCALAR))

    def _value(self, i, ops):
        if self.length is not None:
            i = ops.minimum(i, float(self.length))
        r0, kind = self.lr, self.kind
        if kind == "seq1":
            return r0 / (i + 1.0)
        if kind == "seq2":
            return r0 / ops.sqrt(i + 1.0)
        if kind == "seq3":
            return r0 * ops.power(0.9, i)
        if kind == "geometric":
            return r0 * ops.power(self.gamma, i)
        # seq4: r_0 is r0 itself; pops i >= 1 follow the sawtooth
        j = ops.maximum(i - 1.0, 0.0)
        block = ops.floor_div(i if kind == "seq4_slides" else j, 10)
        # (10 - m) / 10 rather than 1 - m / 10: exact tenths (pop #10 is 0.1 r0, not 0.0999...)
        q = (10.0 - (j - 10.0 * ops.floor_div(j, 10))) / (10.0 * (block + 1.0))
        return ops.where(i >= 1.0, r0 * q, r0)

    def evaluate(self, t, ops):
        return self._value(ops.floor_div(t, self.period) + 0.0, ops)
