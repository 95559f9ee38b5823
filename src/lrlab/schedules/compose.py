"""Composition: join schedules at boundaries, warm up in front of one, scale, clamp, multiply.

Each composite evaluates each child at most once per call, and the scalar path (one step)
evaluates only the child that is active there, so the cost is linear in the size of the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from lrlab.errors import ConfigError
from lrlab.schedules.base import (
    SCALAR,
    Schedule,
    cached,
    check_float,
    check_int,
    check_order,
    check_schedule,
    check_schedules,
    check_steps,
    register,
    saturate,
    where,
)


@register("join")
@dataclass(frozen=True)
class Join(Schedule):
    """``schedules[i]`` runs from ``boundaries[i-1]`` on, evaluated at ``t - boundaries[i-1]``
    (like optax's ``join_schedules``). ``len(boundaries) == len(schedules) - 1``.

    >>> from lrlab.schedules import Constant, Join
    >>> j = Join(schedules=(Constant(lr=1.0), Constant(lr=2.0)), boundaries=(3,))
    >>> [j(t) for t in range(5)]
    [1.0, 1.0, 1.0, 2.0, 2.0]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "join",
        "schedules": [
            {"type": "constant", "lr": 0.01},
            {"type": "cosine", "lr": 0.1, "total": 150},
        ],
        "boundaries": [50],
    }

    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    def __post_init__(self):
        check_schedules(self, "schedules")
        check_steps(self, "boundaries", lo=1)
        if len(self.boundaries) != len(self.schedules) - 1:
            raise ConfigError(
                f"{where(self, 'boundaries')} must have len(schedules) - 1 = "
                f"{len(self.schedules) - 1} entries, got {len(self.boundaries)}"
            )

    @property
    def horizon(self):
        last = self.schedules[-1].horizon
        return None if last is None else (self.boundaries[-1] if self.boundaries else 0) + last

    def evaluate(self, t, ops):
        starts = (0,) + self.boundaries
        if ops is SCALAR:
            i = ops.count_le(self.boundaries, t)
            return self.schedules[i].evaluate(t - starts[i], ops)
        index = ops.count_le(self.boundaries, t)
        result = self.schedules[0].evaluate(t, ops)
        for i in range(1, len(self.schedules)):
            shifted = ops.maximum(t - starts[i], 0.0)
            result = ops.where(index >= i, self.schedules[i].evaluate(shifted, ops), result)
        return result


@register("warmup")
@dataclass(frozen=True)
class Warmup(Schedule):
    """Linear warmup from ``start_lr`` to ``base(0)`` over ``steps`` steps, then ``base`` shifted
    by ``steps`` (the base's horizon counts after the warmup, as in nanoGPT)::

        lr(t) = start_lr + (base(0) - start_lr) * t / steps   for t < steps
        lr(t) = base(t - steps)                               otherwise

    >>> from lrlab.schedules import Constant, Warmup
    >>> w = Warmup(base=Constant(lr=1.0), steps=4)
    >>> [w(t) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "warmup",
        "steps": 30,
        "base": {"type": "cosine", "lr": 0.1, "total": 170},
    }

    base: Schedule
    steps: int
    start_lr: float = 0.0
    _peak: float = field(init=False, repr=False, compare=False, default=0.0)

    def __post_init__(self):
        check_schedule(self, "base")
        check_int(self, "steps", lo=1)
        check_float(self, "start_lr", lo=0)
        cached(self, "_peak", self.base(0))  # once: recomputing it per call doubles per level

    @property
    def horizon(self):
        return None if self.base.horizon is None else self.steps + self.base.horizon

    def evaluate(self, t, ops):
        ramp = self.start_lr + (self._peak - self.start_lr) * (t / self.steps)
        if ops is SCALAR:
            return ramp if t < self.steps else self.base.evaluate(t - self.steps, ops)
        after = self.base.evaluate(ops.maximum(t - self.steps, 0.0), ops)
        return ops.where(t < self.steps, ramp, after)


@register("scale")
@dataclass(frozen=True)
class Scale(Schedule):
    """``lr(t) = factor * base(t)`` (saturating at the largest finite float).

    >>> from lrlab.schedules import Constant, Scale
    >>> Scale(base=Constant(lr=0.5), factor=3.0)(0)
    1.5
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "scale",
        "factor": 0.5,
        "base": {"type": "cosine", "lr": 0.1, "total": 200},
    }

    base: Schedule
    factor: float

    def __post_init__(self):
        check_schedule(self, "base")
        check_float(self, "factor", lo=0)

    @property
    def horizon(self):
        return self.base.horizon

    def evaluate(self, t, ops):
        return saturate(self.factor * self.base.evaluate(t, ops), ops)


@register("clamp")
@dataclass(frozen=True)
class Clamp(Schedule):
    """``lr(t) = min(max(base(t), min_lr), max_lr)``; no upper bound when ``max_lr`` is omitted.

    >>> from lrlab.schedules import Clamp, Cyclic
    >>> c = Clamp(base=Cyclic(base_lr=0.0, max_lr=4.0, step_size_up=4), min_lr=1.0, max_lr=3.0)
    >>> [c(t) for t in range(5)]
    [1.0, 1.0, 2.0, 3.0, 3.0]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "clamp",
        "min_lr": 0.02,
        "max_lr": 0.08,
        "base": {"type": "cosine", "lr": 0.1, "total": 200},
    }

    base: Schedule
    min_lr: float = 0.0
    max_lr: float | None = None

    def __post_init__(self):
        check_schedule(self, "base")
        check_float(self, "min_lr", lo=0)
        check_float(self, "max_lr", lo=0, allow_none=True)
        check_order(self, "min_lr", "max_lr")

    @property
    def horizon(self):
        return self.base.horizon

    def evaluate(self, t, ops):
        value = ops.maximum(self.base.evaluate(t, ops), self.min_lr)
        return value if self.max_lr is None else ops.minimum(value, self.max_lr)


@register("chain")
@dataclass(frozen=True)
class Chain(Schedule):
    """The product ``lr(t) = schedules[0](t) * schedules[1](t) * ...`` (saturating).

    torch's ``ChainedScheduler`` multiplies the factors of multiplicative schedulers: give the
    base learning rate to one schedule and ``lr = 1`` to the others (``constant_factor``,
    ``linear``, ``exponential``, ...).

    >>> from lrlab.schedules import Chain, ConstantFactor, Exponential
    >>> c = Chain(schedules=(ConstantFactor(lr=1.0, factor=0.5, total_iters=2),
    ...                      Exponential(lr=0.1, gamma=0.5)))
    >>> [c(t) for t in range(4)]
    [0.05, 0.025, 0.025, 0.0125]
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "chain",
        "schedules": [
            {"type": "constant_factor", "lr": 1.0, "factor": 0.5, "total_iters": 20},
            {"type": "exponential", "lr": 0.1, "gamma": 0.99},
        ],
    }

    schedules: tuple[Schedule, ...]

    def __post_init__(self):
        check_schedules(self, "schedules")

    @property
    def horizon(self):
        horizons = [s.horizon for s in self.schedules]
        known = [h for h in horizons if h is not None]
        return max(known) if len(known) == len(horizons) else None

    def evaluate(self, t, ops):
        value = self.schedules[0].evaluate(t, ops)
        for schedule in self.schedules[1:]:
            value = saturate(value * schedule.evaluate(t, ops), ops)
        return value
