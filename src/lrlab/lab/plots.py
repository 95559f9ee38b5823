"""The report's figures: learning-rate curves, the objective per seed with its mean and
interval (the evidence behind each verdict), and every metric's curve per epoch.

Colours and line styles stay distinct for up to 40 schedules: ten colours (``tab10``) times four
line styles (solid, dashed, dotted, dash-dot); the baseline is drawn thick and black.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrlab.atomic import atomic_save_figure
from lrlab.lab.contract import TrialStatus

if TYPE_CHECKING:
    from lrlab.lab.report import Report

LINE_STYLES = ("-", "--", ":", "-.")


def style(index: int, baseline: bool = False) -> dict[str, Any]:
    """Matplotlib line properties of the ``index``-th schedule (distinct for 40 schedules).

    >>> style(0), style(13)["linestyle"], style(2, baseline=True)["color"]
    ({'color': 'C0', 'linestyle': '-', 'lw': 1.3}, '--', 'black')
    """
    if baseline:
        return {"color": "black", "linestyle": "-", "lw": 2.2}
    return {"color": f"C{index % 10}", "linestyle": LINE_STYLES[(index // 10) % 4], "lw": 1.3}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    atomic_save_figure(fig, path)
    _pyplot().close(fig)


def _scale(name: str) -> float:
    from lrlab.lab.report import is_fraction_metric

    return 100.0 if is_fraction_metric(name) else 1.0


# --------------------------------------------------------------------------------------------
# Learning rates


def _schedule_curve(
    entry: dict, epochs: int, config: dict | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(epoch_axis, lr)`` of a closed-form schedule (``config``, default the entry's resolved
    lr schedule); None for a metric-driven policy."""
    from lrlab import from_config
    from lrlab.schedules import Schedule

    try:
        obj = from_config(entry["resolved"] if config is None else config)
    except Exception:  # a config this lrlab cannot build any more: fall back to recorded LRs
        return None
    if not isinstance(obj, Schedule):
        return None
    spe = int(entry["steps_per_epoch"])
    t = np.arange(epochs * spe + 1, dtype=np.float64)
    return t / spe, obj.values(t)


def _hyperparam_curves(ax: Any, entry: dict, epochs: int, drawstyle: str) -> None:
    """The schedule's scheduled hyper-parameters (momentum, ...) on a right-hand axis, dashed."""
    hyperparams = entry.get("resolved_hyperparams") or {}
    curves = {
        k: curve
        for k, c in hyperparams.items()
        if (curve := _schedule_curve(entry, epochs, c)) is not None
    }
    if not curves:
        return
    right = ax.twinx()
    for i, (key, (x, y)) in enumerate(curves.items(), start=1):
        right.plot(x, y, lw=1.0, ls="--", color=f"C{i}", drawstyle=drawstyle, label=key)
    right.set_ylabel(", ".join(curves), fontsize=8)
    right.legend(fontsize=7, loc="lower right")


def _recorded_lr(ax: Any, report: Report, name: str) -> None:
    for t in report.trials:
        lr = t.metrics.get("lr")
        if t.schedule == name and lr:
            # epoch e (from 1) ran from e - 1 to e at (mean) learning rate lr[e]
            x = np.asarray(t.epochs, dtype=float)
            y = np.asarray(lr, dtype=float)
            ax.step(np.append(x - 1, x[-1]), np.append(y, y[-1]), where="post", lw=0.9, alpha=0.8)
    ax.set_title(f"{name} (recorded per epoch, each seed)", fontsize=10)


def plot_lr_curves(report: Report, path: str | Path) -> None:
    """One panel per schedule: the closed-form LR curve, or, for a policy (or a schedule this
    lrlab cannot rebuild), the LR recorded each epoch of every seed."""
    plt = _pyplot()
    names = [s.name for s in report.stats]
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 2.8 * nrows), squeeze=False, sharex=True
    )
    epochs = int(report.study.get("epochs", max((len(t.epochs) for t in report.trials), default=1)))
    for ax, name in zip(axes.flat, names):
        entry = report.study["schedules"][name]
        curve = (
            _schedule_curve(entry, epochs)
            if isinstance(entry, dict) and "resolved" in entry
            else None
        )
        if curve is None:
            _recorded_lr(ax, report, name)
        else:
            steps = "steps-post" if int(entry["steps_per_epoch"]) == 1 else "default"
            ax.plot(curve[0], curve[1], lw=1.0, color="C0", drawstyle=steps)
            ax.set_title(name, fontsize=10)
            _hyperparam_curves(ax, entry, epochs, steps)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for row in axes:
        row[0].set_ylabel("learning rate")
    fig.suptitle(f"Learning-rate schedules: {report.study['name']}")
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------------------------------
# The objective per seed


def plot_per_seed(report: Report, path: str | Path) -> None:
    """The objective of every done seed (dots, jittered sideways), each schedule's mean (a bar)
    and its bootstrap 95% interval (a vertical line); the baseline's mean as a dashed line."""
    plt = _pyplot()
    obj = report.objective
    k = _scale(obj.name)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(report.stats) + 2), 4.2))
    rng = np.random.default_rng(0)  # fixed jitter: the same report draws the same picture
    for i, s in enumerate(report.stats):
        values = k * np.asarray(list(s.values.values()), dtype=float)
        color = style(i, s.name == report.baseline)["color"]
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=14, color=color, alpha=0.7)
        if s.objective.n:
            ax.hlines(k * s.objective.mean, i - 0.3, i + 0.3, color=color, lw=2)
        low, high = s.bootstrap
        if math.isfinite(low):
            ax.vlines(i + 0.34, k * low, k * high, color=color, lw=2.5)
        if s.name == report.baseline and s.objective.n:
            ax.axhline(k * s.objective.mean, color="black", ls="--", lw=0.8, alpha=0.6)
    ax.set_xticks(range(len(report.stats)), [s.name for s in report.stats], rotation=30, ha="right")
    unit = " %" if k == 100 else ""
    better = "lower" if obj.mode == "min" else "higher"
    ax.set_ylabel(f"{obj.name}{unit} ({better} is better)")
    ax.set_title(f"{obj.name} per seed, mean and bootstrap 95% CI: {report.study['name']}")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------------------------------
# Curves per epoch


def curve_metrics(report: Report) -> list[str]:
    """The per-epoch series to draw: losses first, then the other metrics (the LR and timings
    are drawn elsewhere or not at all)."""
    from lrlab.lab.report import RUN_SERIES

    names = list(dict.fromkeys(m for t in report.trials for m in t.metrics if m not in RUN_SERIES))
    return sorted(names, key=lambda m: ("loss" not in m, names.index(m)))


def _mean_curve(report: Report, schedule: str, metric: str) -> np.ndarray | None:
    runs = [
        t.metrics[metric]
        for t in report.trials
        if t.schedule == schedule and t.status == TrialStatus.DONE and t.metrics.get(metric)
    ]
    if not runs:
        return None
    length = min(len(r) for r in runs)
    return np.array([r[:length] for r in runs], dtype=np.float64)


def zoom(curves: list[np.ndarray]) -> tuple[float, float] | None:
    """Y limits where mean curves differ: the range they span over the second half of their
    epochs, padded by 10% (the early epochs, where every schedule is far from its end, would
    otherwise take the whole axis).

    >>> zoom([np.array([0.2, 0.8, 0.90, 0.91]), np.array([0.3, 0.7, 0.93, 0.95])])
    (0.895, 0.955)
    """
    tails = [c[len(c) // 2 :] for c in curves if len(c)]
    values = np.concatenate(tails) if tails else np.array([])
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low, high = float(values.min()), float(values.max())
    pad = 0.1 * (high - low) if high > low else max(abs(high) * 0.01, 1e-6)
    return round(low - pad, 12), round(high + pad, 12)


def _panel(ax: Any, report: Report, metric: str) -> None:
    k = _scale(metric)
    means = []
    for i, s in enumerate(report.stats):
        runs = _mean_curve(report, s.name, metric)
        if runs is None:
            continue
        mean = k * np.nanmean(runs, axis=0)
        std = k * np.nanstd(runs, axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
        x = np.arange(1, len(mean) + 1)
        props = style(i, s.name == report.baseline)
        ax.plot(x, mean, label=f"{s.name} (n={len(runs)})", **props)
        ax.fill_between(x, mean - std, mean + std, color=props["color"], alpha=0.08, lw=0)
        means.append(mean)
    limits = zoom(means)
    if limits is not None:
        ax.set_ylim(*limits)
    last = max((len(m) for m in means), default=0)
    if last > 2:  # the same window as the zoom: the second half of the epochs
        ax.set_xlim(last // 2, last)
    ax.set_title(f"{metric}{' %' if k == 100 else ''} (second half of training)", fontsize=10)
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)


def plot_curves(report: Report, path: str | Path) -> None:
    """One panel per metric series (losses beside accuracies), mean over done seeds with a ±1 std
    band, each y-axis zoomed to where the schedules differ; one legend for all panels."""
    plt = _pyplot()
    metrics = curve_metrics(report) or [report.objective.name]
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows + 1.2), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        _panel(ax, report, metric)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        ncol = min(5, len(handles))
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(f"Per-epoch curves (mean ± std over seeds): {report.study['name']}")
    rows_of_legend = math.ceil(len(handles) / 5) if handles else 0
    fig.tight_layout(rect=(0, 0.04 * rows_of_legend, 1, 1))
    _save(fig, path)
