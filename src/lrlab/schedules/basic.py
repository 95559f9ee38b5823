"""The classic schedules: constant, step, multistep, exponential, polynomial, cosine, restarts.

Where torch has the schedule, the value at step ``t`` equals the torch scheduler's after ``t``
calls of ``step()`` (its closed form), which the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

from lrlab.errors import ConfigError
from lrlab.schedules.base import Schedule, check_float, check_int, register


@register("constant")
@dataclass(frozen=True)
class Constant(Schedule):
    """``lr(t) = lr``.

    >>> Constant(lr=0.1)(12345)
    0.1
    """

    lr: float

    def __post_init__(self):
        check_float(self, "lr", lo=0)

    def evaluate(self, t, ops):
        return self.lr + 0.0 * t


@register("step")
@dataclass(frozen=True)
class Step(Schedule):
    """``lr(t) = lr * gamma ** floor(t / step_size)`` (torch ``StepLR``).

    >>> s = Step(lr=1.0, step_size=3, gamma=0.5)
    >>> [s(t) for t in range(7)]
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    """

    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_int(self, "step_size", lo=1)
        check_float(self, "gamma", lo=0)

    def evaluate(self, t, ops):
        return self.lr * self.gamma ** ops.floor(t / self.step_size)


@register("multistep")
@dataclass(frozen=True)
class MultiStep(Schedule):
    """``lr(t) = lr * gamma ** (number of milestones <= t)`` (torch ``MultiStepLR``).

    >>> s = MultiStep(lr=0.1, milestones=(2, 4), gamma=0.1)
    >>> [round(s(t), 12) for t in range(6)]
    [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    """

    lr: float
    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_float(self, "gamma", lo=0)
        try:
            milestones = tuple(int(m) for m in self.milestones)
        except (TypeError, ValueError):
            raise ConfigError(
                f"multistep.milestones must be a list of integers >= 0, got {self.milestones!r}"
            ) from None
        if any(m < 0 for m in milestones) or list(milestones) != sorted(milestones):
            raise ConfigError(
                f"multistep.milestones must be non-negative and sorted, got {list(milestones)}"
            )
        object.__setattr__(self, "milestones", milestones)

    def evaluate(self, t, ops):
        return self.lr * self.gamma ** ops.count_le(self.milestones, t)


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

    >>> Exponential(lr=1.0, gamma=0.5)(3)
    0.125
    """

    lr: float
    gamma: float

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_float(self, "gamma", lo=0)

    def evaluate(self, t, ops):
        return self.lr * self.gamma**t


@register("polynomial")
@dataclass(frozen=True)
class Polynomial(Schedule):
    """``lr(t) = end_lr + (lr - end_lr) * (1 - min(t, total) / total) ** power``.

    torch's ``PolynomialLR(total_iters=total, power=power)`` is the case ``end_lr = 0``.

    >>> p = Polynomial(lr=1.0, end_lr=0.0, total=4, power=2.0)
    >>> [p(t) for t in range(6)]
    [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    """

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

    >>> c = Cosine(lr=1.0, total=4)
    >>> [round(c(t), 12) for t in range(5)]
    [1.0, 0.853553390593, 0.5, 0.146446609407, 0.0]
    """

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
        return self.end_lr + (self.lr - self.end_lr) * (1.0 + ops.cos(ops.pi * x)) / 2.0


@register("cosine_restarts")
@dataclass(frozen=True)
class CosineRestarts(Schedule):
    """SGDR: cosine from ``lr`` to ``end_lr`` over ``period`` steps, then restart; each period is
    ``period_mult`` times the last (torch ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)``).

    With ``n`` the index of the current period, ``start_n = period * (mult**n - 1) / (mult - 1)``
    (``period * n`` when ``mult == 1``), ``T_n = period * mult**n`` and ``t_cur = t - start_n``:
    ``lr(t) = end_lr + (lr - end_lr) * (1 + cos(pi * t_cur / T_n)) / 2``.

    >>> s = CosineRestarts(lr=1.0, period=2, period_mult=2)
    >>> [s(t) for t in range(8)]
    [1.0, 0.5, 1.0, 0.8535533905932737, 0.5, 0.14644660940672627, 1.0, 0.9619397662556434]
    """

    lr: float
    period: int
    end_lr: float = 0.0
    period_mult: float = 1.0

    def __post_init__(self):
        check_float(self, "lr", lo=0)
        check_float(self, "end_lr", lo=0)
        check_int(self, "period", lo=1)
        check_float(self, "period_mult", lo=1)

    def _period_start(self, n):
        if self.period_mult == 1.0:
            return self.period * n
        return self.period * (self.period_mult**n - 1.0) / (self.period_mult - 1.0)

    def evaluate(self, t, ops):
        mult = self.period_mult
        if mult == 1.0:
            n = ops.floor(t / self.period)
        else:
            n = ops.floor(ops.log(t / self.period * (mult - 1.0) + 1.0) / ops.log(mult))
            # the logarithm can land a hair below an integer at a period boundary: correct it
            n = ops.where(self._period_start(n + 1) <= t, n + 1, n)
            n = ops.where(self._period_start(n) > t, n - 1, n)
        t_cur = t - self._period_start(n)
        length = self.period * mult**n
        return (
            self.end_lr + (self.lr - self.end_lr) * (1.0 + ops.cos(ops.pi * t_cur / length)) / 2.0
        )
