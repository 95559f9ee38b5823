"""The plateau trigger decides exactly like torch's ReduceLROnPlateau on positive metrics.

Metrics live on the grids real runs produce (losses rounded to 0.01, accuracies in whole
percent), and a third of them are placed exactly on torch's bar (``best * (1 - threshold)``
etc., rounded to the grid), where a differently rounded bar flips the decision. Every
combination of mode, threshold mode, patience, cooldown, min_lr, factor and eps-sized rates is
compared with the real torch, step by step: the same reductions at the same epochs, the same
learning rates.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

import lrlab
from lrlab.policies import replay

SEQUENCES_PER_MODE = 700  # x 4 modes
LENGTH = 24
REL_THRESHOLDS = (0.0, 1e-4, 0.01, 0.05, 0.1, 0.25, 0.5)
ABS_THRESHOLDS = {"loss": (0.0, 0.01, 0.02, 0.05, 0.1), "percent": (0.0, 0.5, 1.0, 2.0, 5.0)}
# (lr0, factor, min_lr): plain cases, a floor reached, rates small enough for torch's eps
RATES = (
    (1.0, 0.5, 0.0),
    (0.1, 0.1, 0.0),
    (1.0, 0.9, 0.3),
    (0.1, 0.5, 0.02),
    (1e-7, 0.1, 0.0),
    (1e-7, 0.9, 0.0),
)


def torch_plateau(**kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=kw.pop("lr0"))
    return opt, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)


def on_grid(value: float, grid: str) -> float:
    value = round(value, 2) if grid == "loss" else float(round(value))
    return max(value, 0.01 if grid == "loss" else 1.0)


def torch_bar(best: float, mode: str, threshold_mode: str, threshold: float) -> float:
    """torch's own _is_better bar, written out (the reference the generator aims at)."""
    if threshold_mode == "rel":
        return best * (1.0 - threshold) if mode == "min" else best * (threshold + 1.0)
    return best - threshold if mode == "min" else best + threshold


def run_case(rng: random.Random, mode: str, threshold_mode: str):
    grid = rng.choice(("loss", "percent"))
    threshold = rng.choice(REL_THRESHOLDS if threshold_mode == "rel" else ABS_THRESHOLDS[grid])
    lr0, factor, min_lr = rng.choice(RATES)
    kw = dict(
        mode=mode,
        threshold=threshold,
        threshold_mode=threshold_mode,
        patience=rng.randint(0, 3),
        cooldown=rng.randint(0, 2),
        factor=factor,
        min_lr=min_lr,
    )
    opt, ref = torch_plateau(lr0=lr0, **kw)
    metric = on_grid(rng.uniform(0.5, 3.0) if grid == "loss" else rng.uniform(20, 90), grid)
    metrics, torch_lrs, on_bar = [], [], 0
    for _ in range(LENGTH):
        metrics.append(metric)
        ref.step(metric)
        torch_lrs.append(opt.param_groups[0]["lr"])
        bar = torch_bar(ref.best, mode, threshold_mode, threshold)
        if rng.random() < 0.35:  # exactly on the bar, as the grid rounds it
            metric = on_grid(bar, grid)
            on_bar += metric == bar
        else:
            unit = 0.01 if grid == "loss" else 1.0
            metric = on_grid(metric + unit * rng.randint(-6, 6), grid)
    config = {"type": "policy", "trigger": "plateau", "lr0": lr0, **kw}
    if min_lr == 0.0:
        del config["min_lr"]
    return config, metrics, torch_lrs, on_bar


def old_rule_disagrees(config: dict, metrics: list[float]) -> int:
    """How often lrlab's former bar (best - threshold * |best|) decides an improvement otherwise."""
    best, disagreements = None, 0
    plateau = lrlab.from_config(config).trigger
    for m in metrics:
        if best is not None:
            step = (
                config["threshold"] * abs(best)
                if config["threshold_mode"] == "rel"
                else config["threshold"]
            )
            old = m < best - step if config["mode"] == "min" else m > best + step
            new = m < plateau.bar(best) if config["mode"] == "min" else m > plateau.bar(best)
            disagreements += old != new
            best = m if new else best
        else:
            best = m
    return disagreements


@pytest.mark.parametrize(
    "mode, threshold_mode", list(itertools.product(("min", "max"), ("rel", "abs")))
)
def test_plateau_equals_reduce_lr_on_plateau_on_grid_metrics(mode, threshold_mode):
    rng = random.Random(f"{mode}-{threshold_mode}")
    reductions = on_bar = flips = 0
    for _ in range(SEQUENCES_PER_MODE):
        config, metrics, torch_lrs, hits = run_case(rng, mode, threshold_mode)
        r = replay(lrlab.from_config(config), metrics)
        ours = r.lrs[1:] + [r.final_lr]  # the rate after each observation, like torch_lrs
        torch_changes = [
            i for i in range(LENGTH) if torch_lrs[i] != ([config["lr0"]] + torch_lrs)[i]
        ]
        assert r.pop_epochs == torch_changes, (config, metrics)
        if (
            config["factor"] == 0.5
        ):  # powers of two: closed form and torch's products agree bit for bit
            assert ours == torch_lrs, (config, metrics)
        else:
            assert ours == pytest.approx(torch_lrs, rel=1e-12, abs=0.0), (config, metrics)
        reductions += r.pops
        on_bar += hits
        flips += old_rule_disagrees(config, metrics)
    print(
        f"{mode}/{threshold_mode}: {reductions} reductions, {on_bar} metrics exactly on the bar, "
        f"{flips} decisions the former rule got wrong"
    )
    assert reductions > 500 and on_bar > 300
    if threshold_mode == "rel":
        assert flips >= 3  # the grid metrics do reach the cases torch's rounding decides


def test_eps_skips_a_reduction_smaller_than_eps_like_torch():
    # 1e-7 -> 1e-8 is a reduction of 9e-8 > eps; 1e-8 -> 1e-9 (9e-9 <= 1e-8) is skipped, as in torch
    config = {"type": "policy", "trigger": "plateau", "patience": 0, "factor": 0.1, "lr0": 1e-7}
    r = replay(lrlab.from_config(config), [1.0] * 6)
    assert r.pop_epochs == [1]
    opt, ref = torch_plateau(lr0=1e-7, patience=0, factor=0.1)
    for m in [1.0] * 6:
        ref.step(m)
    assert opt.param_groups[0]["lr"] == r.final_lr == pytest.approx(1e-8, rel=1e-15)
    # eps = 0 reduces every time; a larger eps stops earlier
    assert replay(lrlab.from_config({**config, "eps": 0.0}), [1.0] * 6).pops == 5
    assert replay(lrlab.from_config({**config, "eps": 1e-7}), [1.0] * 6).pops == 0
    # with a schedule, eps compares the multiplier (documented)
    on_cosine = {k: v for k, v in config.items() if k != "lr0"}
    on_cosine["schedule"] = {"type": "constant", "lr": 1.0}
    assert replay(lrlab.from_config({**on_cosine, "eps": 0.05}), [1.0] * 6).pops == 2  # 0.9, 0.09


def test_a_metric_exactly_on_the_bar_keeps_the_rate_as_in_torch():
    # the example: mode min, threshold 0.1, [0.1, 0.09]: 0.09 < 0.1 * 0.9 in floats
    config = {
        "type": "policy",
        "trigger": "plateau",
        "patience": 0,
        "threshold": 0.1,
        "factor": 0.5,
        "lr0": 1.0,
    }
    assert replay(lrlab.from_config(config), [0.1, 0.09]).pops == 0
    opt, ref = torch_plateau(lr0=1.0, patience=0, threshold=0.1, factor=0.5)
    ref.step(0.1)
    ref.step(0.09)
    assert opt.param_groups[0]["lr"] == 1.0


def test_negative_metrics_mirror_the_positive_decisions():
    """Sign-correct: min on m decides as max on -m (exactly: negation is exact), and a flat or
    worsening negative metric is not an improvement (torch's rel bar would call it one)."""
    rng = random.Random(5)
    for _ in range(400):
        metrics = [round(rng.uniform(-3, 3), 2) for _ in range(20)]
        keys = dict(
            threshold=rng.choice(REL_THRESHOLDS[1:]),
            threshold_mode=rng.choice(("rel", "abs")),
            patience=rng.randint(0, 2),
            cooldown=rng.randint(0, 1),
        )
        base = {"type": "policy", "trigger": "plateau", "factor": 0.5, "lr0": 1.0, **keys}
        low = replay(lrlab.from_config({**base, "mode": "min"}), metrics)
        high = replay(lrlab.from_config({**base, "mode": "max"}), [-m for m in metrics])
        assert low.pop_epochs == high.pop_epochs
    plateau = lrlab.from_config(
        {"type": "policy", "trigger": "plateau", "factor": 0.5, "lr0": 1.0}
    ).trigger
    for best in (-2.0, -0.37, -1e-3):
        assert plateau.bar(best) < best and not best < plateau.bar(best)
    assert math.isclose(plateau.bar(-2.0), -2.0 * (1 + 1e-4), rel_tol=0, abs_tol=0)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_every_grid_metric_next_to_the_bar_decides_as_torch(mode):
    """Exhaustive: each best on the 0.01 grid (0.01..3.00) and in whole percent (1..100), each
    threshold, the next metric one grid step below, on, and above torch's bar as rounded."""
    cases = disagreements_with_old_rule = 0
    for grid, bests in (("loss", [i / 100 for i in range(1, 301)]), ("percent", range(1, 101))):
        unit = 0.01 if grid == "loss" else 1.0
        for best, threshold in itertools.product(bests, (0.01, 0.05, 0.1, 0.2, 0.25, 0.3)):
            bar = torch_bar(float(best), mode, "rel", threshold)
            for delta in (-unit, 0.0, unit):
                m = on_grid(bar + delta, grid)
                opt, ref = torch_plateau(
                    lr0=1.0, mode=mode, patience=0, threshold=threshold, factor=0.5
                )
                ref.step(float(best))
                ref.step(m)
                config = {
                    "type": "policy",
                    "trigger": "plateau",
                    "mode": mode,
                    "patience": 0,
                    "threshold": threshold,
                    "factor": 0.5,
                    "lr0": 1.0,
                }
                r = replay(lrlab.from_config(config), [float(best), m])
                assert r.final_lr == opt.param_groups[0]["lr"], (best, threshold, m)
                old_bar = (
                    best - threshold * abs(best) if mode == "min" else best + threshold * abs(best)
                )
                old_improves = m < old_bar if mode == "min" else m > old_bar
                disagreements_with_old_rule += old_improves != (r.pops == 0)
                cases += 1
    print(
        f"{mode}: {cases} cases next to the bar, {disagreements_with_old_rule} decided otherwise by the former rule"
    )
    assert disagreements_with_old_rule >= 10
