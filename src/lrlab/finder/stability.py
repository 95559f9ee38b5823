"""The stability edge of (momentum) SGD, estimated from how fast a range test blows up.

Near a minimum every loss is locally quadratic. On a quadratic with curvature ``lam``, one step of
``torch.optim.SGD`` maps the pair (weight, momentum buffer) of each eigen-direction through a fixed
2x2 matrix that depends only on ``a = lr * lam`` (and momentum ``mu``, dampening ``d``, Nesterov):

* heavy ball: ``z**2 - (1 + mu - a*(1 - d)) * z + mu = 0``;
* Nesterov:   the matrix ``[[1 - a*(1 + mu), -mu**2], [a, mu]]`` (``a_crit = 2(1+mu)/(1+2mu)``).

Gradient descent is stable while the spectral radius ``rho(a)`` of that matrix is at most 1; it
first exceeds 1 at ``a_crit`` (``2`` for plain GD, ``2 (1 + mu) / (1 - d)`` for heavy ball). Beyond
it, the sharpest direction grows by ``rho`` per step and the excess loss (loss minus its minimum)
by ``rho**2``. So the last steps of a range test that diverged give ``rho`` at a known ``lr``;
solving ``rho(lr * lam) = rho_observed`` for ``lam`` and returning ``a_crit / lam`` gives the
largest stable learning rate, without the lag of reading it off the curve (the unstable direction
first has to regrow from the tiny size earlier steps shrank it to before the loss shows anything).

This is exact for full-batch gradient descent on least squares and a first-order model otherwise.
Adaptive optimizers (Adam, ...) have no such fixed linear map; for them no edge is estimated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["critical_product", "estimate_edge", "optimizer_model", "sgd_radius"]


def sgd_radius(
    a: float, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False
) -> float:
    """Spectral radius of one SGD step on a quadratic direction with ``a = lr * curvature``."""
    mu = float(momentum)
    if mu == 0.0:
        return abs(1.0 - a)
    if nesterov:
        m = np.array([[1.0 - a * (1.0 + mu), -mu * mu], [a, mu]])
    else:
        ad = a * (1.0 - dampening)
        m = np.array([[1.0 - ad, -mu], [ad, mu]])
    return float(np.max(np.abs(np.linalg.eigvals(m))))


def _solve_increasing(f, target: float, lo: float, hi: float) -> float:
    """Bisection for ``f(a) = target`` with ``f`` increasing on ``[lo, hi]`` (hi grown as needed)."""
    while f(hi) < target and hi < 1e12:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def critical_product(
    momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False
) -> float:
    """The largest ``a = lr * curvature`` for which SGD is stable (``rho(a) <= 1``)."""
    mu = float(momentum)
    if mu == 0.0:
        return 2.0
    if not nesterov:
        return 2.0 * (1.0 + mu) / (1.0 - dampening)
    # Nesterov: the root z = -1 of det(M - z I) gives 2 (1 + mu) = a (1 + 2 mu).
    return 2.0 * (1.0 + mu) / (1.0 + 2.0 * mu)


def optimizer_model(optimizer: Any) -> dict[str, Any] | None:
    """The hyper-parameters the stability model needs, or None for optimizers it does not cover."""
    import torch

    if not isinstance(optimizer, torch.optim.SGD):
        return None
    g = optimizer.param_groups[0]
    return {
        "type": "sgd",
        "momentum": float(g.get("momentum", 0.0) or 0.0),
        "dampening": float(g.get("dampening", 0.0) or 0.0),
        "nesterov": bool(g.get("nesterov", False)),
    }


def estimate_edge(
    lr, loss, model: Mapping[str, Any] | None, *, min_ratio: float = 2.0
) -> dict[str, Any] | None:
    """Estimate the largest stable learning rate from the blow-up at the end of a diverged test.

    ``lr[t]`` is the rate of optimizer step t and ``loss[t]`` the (raw) loss measured just before
    that step, so ``loss[t+1] / loss[t]`` is the growth caused by ``lr[t]``. Uses the last pair of
    points, where the unstable direction dominates most; requires the last loss to be at least
    ``min_ratio`` times the run's minimum and the excess loss to grow over the last pair.
    Returns ``{"lr": edge, "curvature": lam, "rho": rho, "at_lr": lr[t]}`` or None.
    """
    if model is None or model.get("type") != "sgd":
        return None
    lr = np.asarray(lr, dtype=float)
    loss = np.asarray(loss, dtype=float)
    finite = np.isfinite(loss)
    if finite.sum() < 3 or not finite[-1] or not finite[-2]:
        return None
    lmin = float(np.min(loss[finite]))
    if lmin <= 0 or loss[-1] < min_ratio * lmin:
        return None
    ex_prev, ex_last = loss[-2] - lmin, loss[-1] - lmin
    if ex_prev <= 0 or ex_last <= ex_prev:
        return None
    rho = math.sqrt(ex_last / ex_prev)
    mu, d, nest = model["momentum"], model["dampening"], model["nesterov"]
    a_crit = critical_product(mu, d, nest)
    at_lr = float(lr[-2])
    if at_lr <= 0:
        return None
    a = _solve_increasing(
        lambda x: sgd_radius(x, mu, d, nest), rho, a_crit, 2.0 * a_crit + 2.0 * rho
    )
    lam = a / at_lr
    return {"lr": a_crit / lam, "curvature": lam, "rho": rho, "at_lr": at_lr}
