"""Schedules of transformer training: inverse square root with warm-up, warmup-stable-decay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lrlab.errors import ConfigError
from lrlab.schedules.base import Schedule, check_choice, check_float, check_int, register, where

WSD_DECAYS = ("linear", "cosine", "1-sqrt")


@register("inverse_sqrt")
@dataclass(frozen=True)
class InverseSqrt(Schedule):
    """Inverse square root with linear warm-up (Vaswani et al., arXiv:1706.03762; fairseq's
    ``inverse_sqrt``; T5, arXiv:1910.10683)::

        lr(t) = warmup_init_lr + (lr - warmup_init_lr) * t / warmup_steps    for t < warmup_steps
        lr(t) = lr / sqrt((t + timescale - warmup_steps) / timescale)         otherwise

    ``timescale`` defaults to ``warmup_steps`` (then ``lr * sqrt(warmup_steps / t)``, fairseq's
    form); with ``warmup_init_lr = 0`` it is transformers' ``get_inverse_sqrt_schedule``.

    >>> from lrlab.schedules import InverseSqrt
    >>> s = InverseSqrt(lr=1.0, warmup_steps=4)
    >>> [s(t) for t in (0, 2, 4, 16)]
    [0.0, 0.5, 1.0, 0.5]
    """

    example: ClassVar[dict[str, Any]] = {"type": "inverse_sqrt", "lr": 0.1, "warmup_steps": 20}

    lr: float
    warmup_steps: int
    warmup_init_lr: float = 0.0
    timescale: int | None = None

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_int(self, "warmup_steps", lo=1)
        check_float(self, "warmup_init_lr", lo=0)
        check_int(self, "timescale", lo=1, allow_none=True)

    def evaluate(self, t, ops):
        warm = self.warmup_steps
        timescale = float(warm if self.timescale is None else self.timescale)
        ramp = self.warmup_init_lr + (self.lr - self.warmup_init_lr) * (t / warm)
        after = ops.maximum(t, float(warm)) + (timescale - warm)
        return ops.where(t < warm, ramp, self.lr * (1.0 / ops.sqrt(after / timescale)))


@register("wsd")
@dataclass(frozen=True)
class WarmupStableDecay(Schedule):
    """Warmup-stable-decay (Hu et al., MiniCPM, arXiv:2404.06395; Hägele et al.,
    arXiv:2405.18392): a linear warm-up from ``end_lr`` to ``lr`` over ``warmup_steps``, a
    constant plateau at ``lr``, then a decay to ``end_lr`` over the final ``decay_steps`` of
    ``total`` (``decay``: ``linear``, ``cosine`` or ``1-sqrt``); ``end_lr`` after ``total``.
    transformers' ``get_wsd_schedule`` with ``min_lr_ratio = end_lr / lr``::

        f = progress of the phase in [0, 1)
        lr(t) = end_lr + (lr - end_lr) * shape(f)

    >>> from lrlab.schedules import WarmupStableDecay
    >>> s = WarmupStableDecay(lr=1.0, total=10, decay_steps=4, decay="linear")
    >>> [s(t) for t in (0, 5, 6, 7, 9, 10)]
    [1.0, 1.0, 1.0, 0.75, 0.25, 0.0]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "wsd",
        "lr": 0.1,
        "total": 200,
        "decay_steps": 40,
        "warmup_steps": 10,
    }

    lr: float
    total: int
    decay_steps: int
    warmup_steps: int = 0
    end_lr: float = 0.0
    decay: str = "cosine"

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_int(self, "total", lo=1)
        check_int(self, "decay_steps", lo=1)
        check_int(self, "warmup_steps", lo=0)
        check_float(self, "end_lr", lo=0)
        check_choice(self, "decay", WSD_DECAYS)
        if self.warmup_steps + self.decay_steps > self.total:
            raise ConfigError(
                f"{where(self, 'decay_steps')} + warmup_steps must be <= total = {self.total}, "
                f"got {self.decay_steps} + {self.warmup_steps}"
            )

    @property
    def horizon(self):
        return self.total

    def _decay_shape(self, f, ops):
        if self.decay == "linear":
            return 1.0 - f
        if self.decay == "cosine":
            return 0.5 * (1.0 + ops.cos(ops.pi * f))
        return 1.0 - ops.sqrt(f)

    def evaluate(self, t, ops):
        start_decay = self.total - self.decay_steps
        f_warm = ops.clip(t / max(1, self.warmup_steps), 0.0, 1.0)
        f_decay = ops.clip((t - start_decay) / self.decay_steps, 0.0, 1.0)
        shape = ops.where(
            t < self.warmup_steps,
            f_warm,
            ops.where(t < start_decay, 1.0 + 0.0 * t, self._decay_shape(f_decay, ops)),
        )
        return self.end_lr + (self.lr - self.end_lr) * shape
