"""k-decay (METHODS.md section 4): a time warp, or the paper's additive item, over a schedule."""

from __future__ import annotations

from dataclasses import dataclass

from lrlab.errors import ConfigError
from lrlab.schedules.base import (
    Schedule,
    check_choice,
    check_float,
    check_int,
    check_schedule,
    register,
)

KDECAY_FORMS = ("warp", "additive")


@register("kdecay")
@dataclass(frozen=True)
class KDecay(Schedule):
    """k-decay over ``base`` with horizon ``T = total`` (default: the base's own horizon).

    ``form="warp"`` replaces ``t / T`` by ``(t / T) ** k`` inside the base, i.e. evaluates the base
    at ``T * (t / T) ** k``; for cosine that is
    ``eta_e + (eta0 - eta_e) * (1 + cos(pi * t^k / T^k)) / 2``.

    ``form="additive"`` adds the paper's item with the sign that keeps the schedule
    non-increasing: ``eta(t) + (eta0 - eta_e) * (x - x ** k)``, ``x = min(t, T) / T``,
    ``eta0 = base(0)``, ``eta_e = base(T)``; on linear decay it is ``eta_e + (eta0 - eta_e)(1 - x^k)``.

    Both forms return the base unchanged, bit for bit, when ``k = 1``.

    >>> from lrlab.schedules.basic import Polynomial
    >>> base = Polynomial(lr=1.0, total=10)
    >>> KDecay(base=base, k=2.0, form="additive")(5)
    0.75
    >>> KDecay(base=base, k=2.0, form="warp")(5)
    0.75
    """

    base: Schedule
    k: float = 1.5
    form: str = "warp"
    total: int | None = None

    def __post_init__(self):
        check_schedule(self, "base")
        check_float(self, "k", lo=0, lo_open=True)
        check_choice(self, "form", KDECAY_FORMS)
        if self.total is None:
            if self.base.horizon is None:
                raise ConfigError(
                    f"kdecay.total is required: the base schedule {self.base.type_name!r} has no "
                    "horizon (give the number of steps over which it decays)"
                )
            object.__setattr__(self, "total", self.base.horizon)
        check_int(self, "total", lo=1)

    @property
    def horizon(self):
        return self.total

    def evaluate(self, t, ops):
        if self.k == 1.0:
            return self.base.evaluate(t, ops)
        T = float(self.total)
        x = ops.clip(t / T, 0.0, 1.0)
        if self.form == "warp":
            # past the horizon the warp is the identity, so the base's own tail is kept
            warped = ops.where(t < T, T * x**self.k, t)
            return self.base.evaluate(warped, ops)
        eta0, eta_e = self.base(0), self.base(self.total)
        return self.base.evaluate(t, ops) + (eta0 - eta_e) * (x - x**self.k)
