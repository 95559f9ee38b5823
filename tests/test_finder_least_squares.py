"""Least squares, where the divergence learning rate is known in closed form.

For ``f(w) = mean((X w - y)**2)`` the Hessian is ``H = 2 X^T X / n``. Full-batch gradient descent
is stable iff ``lr < 2 / lambda_max(H)``; heavy-ball SGD with momentum ``mu`` iff
``lr < 2 (1 + mu) / lambda_max``. The suggested ``max_lr`` must lie below that edge and not far
below it: the documented band is ``[0.2, 1.0) x edge`` (docs/range-test.md). Each case reports its
ratio (run pytest with ``-s`` to see the table).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lrlab.finder import range_test

BAND = (0.2, 1.0)
N, D = 128, 12


SCALES = {1: 0.3, 10: 1.0, 100: 2.5, 1000: 6.0}  # so that the edges differ: ~22, 1, 0.16, 0.028


def least_squares(kappa: float, seed: int = 0):
    """X (float32) whose Hessian has condition number ``kappa`` (and a scale that depends on it);
    returns X, y, lambda_max (float64, of the float32 data), the exact condition number."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(N, D, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    s = (
        torch.sqrt(torch.logspace(0, -np.log10(kappa), D, dtype=torch.float64))
        * np.sqrt(N)
        * SCALES[kappa]
    )
    x = ((u * s) @ v.T).float()
    w_true = torch.randn(D, generator=g, dtype=torch.float64)
    y = (
        (x.double() @ w_true + 0.1 * torch.randn(N, generator=g, dtype=torch.float64))
        .float()
        .unsqueeze(1)
    )
    hessian = 2.0 * x.double().T @ x.double() / N
    eig = torch.linalg.eigvalsh(hessian)
    return x, y, float(eig.max()), float(eig.max() / eig.min())


def run_case(kappa: float, mode: str, momentum: float = 0.0, steps: int = 100, **suggest_kw):
    x, y, lam_max, cond = least_squares(kappa)
    edge = 2.0 * (1.0 + momentum) / lam_max
    model = nn.Linear(D, 1, bias=False)
    nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    start, end = (0.01 * edge, 3.0 * edge) if mode == "linear" else (1e-3 * edge, 10.0 * edge)
    res = range_test(
        model,
        opt,
        nn.MSELoss(),
        (x, y),
        start_lr=start,
        end_lr=end,
        steps=steps,
        mode=mode,
        batch_size=N,
    )  # one batch = the full data set: gradient descent
    sug = res.suggest(**suggest_kw)
    return res, sug, edge, cond


CASES = [(k, m, 0.0) for k in (1, 10, 100, 1000) for m in ("linear", "exp")]
CASES += [(k, m, 0.5) for k in (10, 1000) for m in ("linear", "exp")]
RATIOS: dict[tuple, float] = {}


@pytest.mark.parametrize(
    "kappa,mode,momentum", CASES, ids=[f"kappa{k}-{m}-mu{mu}" for k, m, mu in CASES]
)
def test_max_lr_is_below_and_near_the_divergence_rate(kappa, mode, momentum, record_property):
    res, sug, edge, cond = run_case(kappa, mode, momentum)
    assert cond == pytest.approx(kappa, rel=1e-3)
    assert res.stop_reason == "diverged"  # the sweep went past the edge and saw it
    assert res.lr[-1] > edge
    ratio = sug.max_lr / edge
    RATIOS[(kappa, mode, momentum)] = ratio
    record_property("max_lr_over_edge", ratio)
    print(
        f"\nkappa={kappa:>5} {mode:6s} mu={momentum}: max_lr = {ratio:.3f} x edge "
        f"(edge {edge:.4g}; candidates "
        + ", ".join(f"{k} {v / edge:.3f}" for k, v in sug.candidates.items())
        + f"; {sug.reasons['max_lr']})"
    )
    assert BAND[0] <= ratio < BAND[1], f"max_lr/edge = {ratio:.3f} outside {BAND}"
    assert sug.base_lr < sug.max_lr
    assert sug.spread["max_lr"] is not None  # a bootstrap spread is reported


def test_ratios_are_not_far_below_the_edge_on_the_whole():
    if len(RATIOS) < len(CASES):  # run alone: compute them
        for case in CASES:
            if case not in RATIOS:
                _, sug, edge, _ = run_case(*case)
                RATIOS[case] = sug.max_lr / edge
    ratios = np.array(list(RATIOS.values()))
    print(
        f"\nmax_lr / edge over all cases: min {ratios.min():.3f} median {np.median(ratios):.3f} max {ratios.max():.3f}"
    )
    assert np.median(ratios) >= 0.6
    assert ratios.max() < 1.0


@pytest.mark.parametrize("kappa", [1, 100])
def test_linear_sweep_without_the_edge_model_stays_in_band(kappa):
    """The curve reading alone (fall onset x backoff), without the blow-up-rate estimate."""
    _, sug, edge, _ = run_case(kappa, "linear", use_edge=False, steps=150)
    assert "edge" not in sug.candidates
    ratio = sug.max_lr / edge
    print(f"\nkappa={kappa} linear, no edge model: max_lr = {ratio:.3f} x edge")
    assert BAND[0] <= ratio < BAND[1]


def test_stability_edge_estimate_is_close_to_the_truth():
    for kappa in (10, 1000):
        res, _, edge, _ = run_case(kappa, "exp")
        from lrlab.finder.stability import estimate_edge

        est = estimate_edge(res.lr, res.loss, res.config["optimizer_model"])
        assert est is not None
        assert est["lr"] / edge == pytest.approx(1.0, abs=0.1)
