"""Composition: join schedules at boundaries, warm up in front of one, scale, clamp."""

from __future__ import annotations

from dataclasses import dataclass

from lrlab.errors import ConfigError
from lrlab.schedules.base import (
    Schedule,
    check_float,
    check_int,
    check_schedule,
    from_config,
    register,
)


@register("join")
@dataclass(frozen=True)
class Join(Schedule):
    """``schedules[i]`` runs from ``boundaries[i-1]`` on, evaluated at ``t - boundaries[i-1]``
    (like optax's ``join_schedules``). ``len(boundaries) == len(schedules) - 1``.

    >>> from lrlab.schedules.basic import Constant
    >>> j = Join(schedules=(Constant(lr=1.0), Constant(lr=2.0)), boundaries=(3,))
    >>> [j(t) for t in range(5)]
    [1.0, 1.0, 1.0, 2.0, 2.0]
    """

    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    def __post_init__(self):
        schedules = tuple(
            from_config(s) if isinstance(s, dict) else s for s in (self.schedules or ())
        )
        if not schedules or not all(isinstance(s, Schedule) for s in schedules):
            raise ConfigError("join.schedules must be a non-empty list of schedules")
        try:
            boundaries = tuple(int(b) for b in self.boundaries)
        except (TypeError, ValueError):
            raise ConfigError(
                f"join.boundaries must be a list of integers, got {self.boundaries!r}"
            ) from None
        if len(boundaries) != len(schedules) - 1:
            raise ConfigError(
                f"join.boundaries must have len(schedules) - 1 = {len(schedules) - 1} entries, "
                f"got {len(boundaries)}"
            )
        if any(b < 1 for b in boundaries) or list(boundaries) != sorted(set(boundaries)):
            raise ConfigError(
                f"join.boundaries must be increasing integers >= 1, got {list(boundaries)}"
            )
        object.__setattr__(self, "schedules", schedules)
        object.__setattr__(self, "boundaries", boundaries)

    @property
    def horizon(self):
        last = self.schedules[-1].horizon
        return None if last is None else (self.boundaries[-1] if self.boundaries else 0) + last

    def evaluate(self, t, ops):
        index = ops.count_le(self.boundaries, t)
        starts = (0,) + self.boundaries
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

    >>> from lrlab.schedules.basic import Constant
    >>> w = Warmup(base=Constant(lr=1.0), steps=4)
    >>> [w(t) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    base: Schedule
    steps: int
    start_lr: float = 0.0

    def __post_init__(self):
        check_schedule(self, "base")
        check_int(self, "steps", lo=1)
        check_float(self, "start_lr", lo=0)

    @property
    def horizon(self):
        return None if self.base.horizon is None else self.steps + self.base.horizon

    def evaluate(self, t, ops):
        peak = self.base(0)
        ramp = self.start_lr + (peak - self.start_lr) * (t / self.steps)
        after = self.base.evaluate(ops.maximum(t - self.steps, 0.0), ops)
        return ops.where(t < self.steps, ramp, after)


@register("scale")
@dataclass(frozen=True)
class Scale(Schedule):
    """``lr(t) = factor * base(t)``.

    >>> from lrlab.schedules.basic import Constant
    >>> Scale(base=Constant(lr=0.5), factor=3.0)(0)
    1.5
    """

    base: Schedule
    factor: float

    def __post_init__(self):
        check_schedule(self, "base")
        check_float(self, "factor", lo=0)

    @property
    def horizon(self):
        return self.base.horizon

    def evaluate(self, t, ops):
        return self.factor * self.base.evaluate(t, ops)


@register("clamp")
@dataclass(frozen=True)
class Clamp(Schedule):
    """``lr(t) = min(max(base(t), min_lr), max_lr)``; no upper bound when ``max_lr`` is omitted.

    >>> from lrlab.schedules.cyclic import Cyclic
    >>> c = Clamp(base=Cyclic(base_lr=0.0, max_lr=4.0, step_size_up=4), min_lr=1.0, max_lr=3.0)
    >>> [c(t) for t in range(5)]
    [1.0, 1.0, 2.0, 3.0, 3.0]
    """

    base: Schedule
    min_lr: float = 0.0
    max_lr: float | None = None

    def __post_init__(self):
        check_schedule(self, "base")
        check_float(self, "min_lr", lo=0)
        check_float(self, "max_lr", lo=0, allow_none=True)
        if self.max_lr is not None and self.max_lr < self.min_lr:
            raise ConfigError(
                f"clamp.max_lr must be >= clamp.min_lr, got {self.max_lr} < {self.min_lr}"
            )

    @property
    def horizon(self):
        return self.base.horizon

    def evaluate(self, t, ops):
        value = ops.maximum(self.base.evaluate(t, ops), self.min_lr)
        return value if self.max_lr is None else ops.minimum(value, self.max_lr)
