"""The classic schedules: constant, step, multistep, exponential, polynomial, cosine.

Where torch has the schedule, the value at step ``t`` equals the torch scheduler's after ``t``
calls of ``step()`` (its closed form), which the tests check. A ``gamma`` above 1 (growth) is
accepted: the rate then saturates at the largest finite float instead of overflowing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lrlab.schedules.base import (
    Schedule,
    check_float,
    check_int,
    check_steps,
    register,
    saturate,
)


@register("constant")
@dataclass(frozen=True)
class Constant(Schedule):
    """``lr(t) = lr``.

    >>> from lrlab.schedules import Constant
    >>> Constant(lr=0.1)(12345)
    0.1
    """

    example: ClassVar[dict[str, Any]] = {"type": "constant", "lr": 0.1}

    lr: float

    def __post_init__(self):
        check_float(self, "lr", lo=0)

    def evaluate(self, t, ops):
        return self.lr + 0.0 * t


@register("step")
@dataclass(frozen=True)
class Step(Schedule):
    """``lr(t) = lr * gamma ** floor(t / step_size)`` (torch ``StepLR``).

    >>> from lrlab.schedules import Step
    >>> s = Step(lr=1.0, step_size=3, gamma=0.5)
    >>> [s(t) for t in range(7)]
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    """

    example: ClassVar[dict[str, Any]] = {"type": "step", "lr": 0.1, "step_size": 30, "gamma": 0.5}

    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_int(self, "step_size", lo=1)
        check_float(self, "gamma", lo=0)

    def evaluate(self, t, ops):
        return saturate(self.lr * ops.power(self.gamma, ops.floor_div(t, self.step_size)), ops)


@register("multistep")
@dataclass(frozen=True)
class MultiStep(Schedule):
    """``lr(t) = lr * gamma ** (number of milestones <= t)`` (torch ``MultiStepLR``).

    >>> from lrlab.schedules import MultiStep
    >>> s = MultiStep(lr=0.1, milestones=(2, 4), gamma=0.1)
    >>> [round(s(t), 12) for t in range(6)]
    [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "multistep",
        "lr": 0.1,
        "milestones": [150, 225],
        "gamma": 0.1,
    }

    lr: float
    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_float(self, "gamma", lo=0)
        check_steps(self, "milestones", strict=False)  # a repeated milestone decays twice

    def evaluate(self, t, ops):
        return saturate(self.lr * ops.power(self.gamma, ops.count_le(self.milestones, t)), ops)


def paper_multistep(total: int, lr: float = 0.1, steps_per_epoch: int = 1) -> MultiStep:
    """The RALR paper's base: ``lr`` (0.1), times 0.1 at 50% and at 75% of ``total`` epochs,
    in steps of ``steps_per_epoch`` (the milestones fall on epoch boundaries).

    >>> paper_multistep(300).milestones
    (150, 225)
    >>> paper_multistep(10, steps_per_epoch=100).milestones
    (500, 700)
    """
    milestones = ((total // 2) * steps_per_epoch, ((3 * total) // 4) * steps_per_epoch)
    return MultiStep(lr=lr, milestones=milestones, gamma=0.1)


@register("exponential")
@dataclass(frozen=True)
class Exponential(Schedule):
    """``lr(t) = lr * gamma ** t`` (torch ``ExponentialLR``).

    >>> from lrlab.schedules import Exponential
    >>> Exponential(lr=1.0, gamma=0.5)(3)
    0.125
    """

    example: ClassVar[dict[str, Any]] = {"type": "exponential", "lr": 0.1, "gamma": 0.98}

    lr: float
    gamma: float

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_float(self, "gamma", lo=0)

    def evaluate(self, t, ops):
        return saturate(self.lr * ops.power(self.gamma, t), ops)


@register("polynomial")
@dataclass(frozen=True)
class Polynomial(Schedule):
    """``lr(t) = end_lr + (lr - end_lr) * (1 - min(t, total) / total) ** power``.

    torch's ``PolynomialLR(total_iters=total, power=power)`` is the case ``end_lr = 0``.

    >>> from lrlab.schedules import Polynomial
    >>> p = Polynomial(lr=1.0, end_lr=0.0, total=4, power=2.0)
    >>> [p(t) for t in range(6)]
    [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "polynomial",
        "lr": 0.1,
        "end_lr": 0.001,
        "total": 200,
        "power": 2.0,
    }

    lr: float
    total: int
    end_lr: float = 0.0
    power: float = 1.0

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_float(self, "end_lr", lo=0)
        check_int(self, "total", lo=1)
        check_float(self, "power", lo=0, lo_open=True)

    @property
    def horizon(self):
        return self.total

    def evaluate(self, t, ops):
        x = ops.clip(t / self.total, 0.0, 1.0)
        return self.end_lr + (self.lr - self.end_lr) * (1.0 - x) ** self.power


@register("cosine")
@dataclass(frozen=True)
class Cosine(Schedule):
    """``lr(t) = end_lr + (lr - end_lr) * (1 + cos(pi * min(t, total) / total)) / 2``.

    torch's ``CosineAnnealingLR(T_max=total, eta_min=end_lr)`` closed form, held at ``end_lr``
    after ``total`` (torch's recursive form would climb back up).

    >>> from lrlab.schedules import Cosine
    >>> c = Cosine(lr=1.0, total=4)
    >>> [round(c(t), 12) for t in range(5)]
    [1.0, 0.853553390593, 0.5, 0.146446609407, 0.0]
    """

    example: ClassVar[dict[str, Any]] = {"type": "cosine", "lr": 0.1, "end_lr": 0.001, "total": 200}

    lr: float
    total: int
    end_lr: float = 0.0

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_float(self, "end_lr", lo=0)
        check_int(self, "total", lo=1)

    @property
    def horizon(self):
        return self.total

    def evaluate(self, t, ops):
        x = ops.clip(t / self.total, 0.0, 1.0)
        # the weight first: (lr - end_lr) * 2 could overflow where the weight never does
        return self.end_lr + (self.lr - self.end_lr) * ((1.0 + ops.cos(ops.pi * x)) / 2.0)
