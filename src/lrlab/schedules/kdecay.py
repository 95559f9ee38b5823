"""k-decay (Zhang & Li, arXiv:2004.05909): a time warp, or the paper's additive item."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from lrlab.errors import ConfigError
from lrlab.schedules.base import (
    Schedule,
    cached,
    check_choice,
    check_float,
    check_int,
    check_schedule,
    register,
    saturate,
    where,
)

KDECAY_FORMS = ("warp", "additive")


def additive_excess(k: float) -> float:
    """``max over x in [0, 1] of x - x ** k`` (k >= 1): how far, as a share of
    ``eta0 - eta_e``, the additive item lifts the base at most (0.25 at k = 2).

    >>> additive_excess(2.0), additive_excess(1.0)
    (0.25, 0.0)
    """
    if k == 1.0:
        return 0.0
    x = k ** (-1.0 / (k - 1.0))
    return x - x**k


@register("kdecay")
@dataclass(frozen=True)
class KDecay(Schedule):
    """k-decay over ``base`` with horizon ``T = total`` (default: the base's own horizon).

    ``form="warp"`` replaces ``t / T`` by ``(t / T) ** k`` inside the base, i.e. evaluates the base
    at ``T * (t / T) ** k``; for cosine that is
    ``eta_e + (eta0 - eta_e) * (1 + cos(pi * t^k / T^k)) / 2``.

    ``form="additive"`` adds the paper's item (Zhang & Li, arXiv:2004.05909, eq. 10) with the
    sign that keeps a linear decay non-increasing: ``eta(t) + (eta0 - eta_e) * (x - x ** k)``,
    ``x = min(t, T) / T``, ``eta0 = base(0)``, ``eta_e = base(T)``; on linear decay it is
    ``eta_e + (eta0 - eta_e)(1 - x^k)``. Its domain is ``k >= 1`` and ``eta_e <= eta0``: there the
    item is never negative, so the rate never goes below the base (never below 0), and it lifts
    the base by at most ``(eta0 - eta_e) * max(x - x^k)`` (:func:`additive_excess`; over cosine
    that can exceed ``eta0`` a little early in training). Other configs are rejected.

    Both forms return the base unchanged, bit for bit, when ``k = 1``.

    >>> from lrlab.schedules import KDecay, Polynomial
    >>> base = Polynomial(lr=1.0, total=10)
    >>> KDecay(base=base, k=2.0, form="additive")(5)
    0.75
    >>> KDecay(base=base, k=2.0, form="warp")(5)
    0.75
    """

    example: ClassVar[dict[str, Any]] = {
        "type": "kdecay",
        "k": 3.0,
        "form": "warp",
        "base": {"type": "cosine", "lr": 0.1, "end_lr": 0.001, "total": 200},
    }

    base: Schedule
    k: float = 1.5
    form: str = "warp"
    total: int | None = None
    _ends: tuple[float, float] = field(init=False, repr=False, compare=False, default=(0.0, 0.0))

    def __post_init__(self):
        check_schedule(self, "base")
        check_float(self, "k", lo=0, lo_open=True)
        check_choice(self, "form", KDECAY_FORMS)
        if self.total is None:
            if self.base.horizon is None:
                raise ConfigError(
                    f"{where(self, 'total')} is required: the base schedule "
                    f"{self.base.type_name!r} has no horizon (give the number of steps over "
                    "which it decays)"
                )
            object.__setattr__(self, "total", self.base.horizon)
        check_int(self, "total", lo=1)
        if self.form == "additive":
            self._check_additive_domain(
                cached(self, "_ends", (self.base(0), self.base(self.total)))
            )

    def _check_additive_domain(self, ends: tuple[float, float]) -> None:
        if self.k < 1.0:
            raise ConfigError(
                f"{where(self, 'k')} must be >= 1 with form 'additive' (below 1 the item is "
                f"negative and can push the rate below 0), got {self.k!r}"
            )
        if ends[1] > ends[0]:
            raise ConfigError(
                f"{where(self, 'base')} must not end above where it starts with form 'additive' "
                f"(base({self.total}) = {ends[1]!r} > base(0) = {ends[0]!r})"
            )

    @property
    def horizon(self):
        return self.total

    def evaluate(self, t, ops):
        if self.k == 1.0:
            return self.base.evaluate(t, ops)
        T = float(self.total or 1)  # total is set in __post_init__
        x = ops.clip(t / T, 0.0, 1.0)
        if self.form == "warp":
            # past the horizon the warp is the identity, so the base's own tail is kept
            warped = ops.where(t < T, T * x**self.k, t)
            return self.base.evaluate(warped, ops)
        eta0, eta_e = self._ends
        item = ops.maximum(x - x**self.k, 0.0)  # x**k <= x on [0, 1]; max() guards rounding
        return saturate(self.base.evaluate(t, ops) + (eta0 - eta_e) * item, ops)
