"""Plot of a range test: loss (top) and accuracy (bottom) against the learning rate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrlab.atomic import atomic_save_figure
from lrlab.finder.smoothing import centred_window, odd_window

if TYPE_CHECKING:  # pragma: no cover
    from lrlab.finder.result import RangeTestResult
    from lrlab.finder.suggest import Suggestion

__all__ = ["plot_result"]

COLORS = {
    "loss": "tab:blue",
    "val_loss": "tab:orange",
    "train_acc": "tab:blue",
    "val_acc": "tab:orange",
}
#: (reading, line style, colour) of the marked readings.
MARKS = (("base_lr", "--", "tab:green"), ("max_lr", "--", "tab:red"), ("lr", ":", "black"))


def _recorded(runs: list[RangeTestResult], name: str) -> bool:
    return any(name in r.metrics and np.isfinite(r.metrics[name]).any() for r in runs)


def _alpha(first: bool, strong: float, faint: float) -> float:
    return strong if first else faint


def _plot_loss(ax: Any, runs: list[RangeTestResult]) -> None:
    val_loss = _recorded(runs, "val_loss")
    for k, r in enumerate(runs):
        first = k == 0
        c = COLORS["loss"]
        raw_label = "training loss (raw)" if first else None
        ax.plot(r.lr, r.loss, color=c, alpha=_alpha(first, 0.25, 0.1), lw=0.8, label=raw_label)
        ema_label = "training loss (EMA)" if first else None
        ax.plot(
            r.lr, r.smoothed_loss, color=c, alpha=_alpha(first, 1.0, 0.35), lw=1.5, label=ema_label
        )
        if val_loss and "val_loss" in r.metrics:
            m = np.isfinite(r.metrics["val_loss"])
            ax.plot(
                r.lr[m],
                r.metrics["val_loss"][m],
                "o-",
                ms=2.5,
                color=COLORS["val_loss"],
                alpha=_alpha(first, 1.0, 0.35),
                lw=1,
                label="validation loss" if first else None,
            )
    finite = np.concatenate([r.loss[np.isfinite(r.loss)] for r in runs]) if runs else np.array([])
    if len(finite):
        lo, hi = np.min(finite), np.percentile(finite, 98)
        if hi > lo:  # the blow-up at the end would squash the useful part
            ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo))
    ax.set_ylabel("loss")


def _plot_accuracy(ax: Any, runs: list[RangeTestResult], names: list[str]) -> None:
    for k, r in enumerate(runs):
        first = k == 0
        for name in names:
            if name not in r.metrics:
                continue
            v = r.metrics[name]
            m = np.isfinite(v)
            c = COLORS[name]
            if name == "train_acc":
                ax.plot(r.lr[m], v[m], color=c, alpha=_alpha(first, 0.2, 0.08), lw=0.8)
                smooth = centred_window(v[m], odd_window(int(m.sum()), 0.1))
                label = "training accuracy (centred mean)" if first else None
                ax.plot(
                    r.lr[m], smooth, color=c, alpha=_alpha(first, 1.0, 0.35), lw=1.5, label=label
                )
            else:
                label = "validation accuracy" if first else None
                alpha = _alpha(first, 1.0, 0.35)
                ax.plot(r.lr[m], v[m], "o-", ms=2.5, lw=1, color=c, alpha=alpha, label=label)
    ax.set_ylabel("accuracy")


def _mark(ax: Any, suggestion: Suggestion, labelled: bool) -> None:
    """The suggested readings as vertical lines, with their interquartile ranges shaded."""
    for key, style, color in MARKS:
        v = getattr(suggestion, key)
        if v is None:
            continue
        ax.axvline(v, ls=style, color=color, lw=1.2, label=f"{key} = {v:.3g}" if labelled else None)
        s = suggestion.spread.get(key)
        if s is not None and s.n > 1 and key != "lr":
            ax.axvspan(s.q25, s.q75, color=color, alpha=0.12)


def _default_title(result: RangeTestResult) -> str:
    n_runs = len(result.runs)
    title = f"LR range test ({result.mode}, {len(result)} steps, stopped: {result.stop_reason}"
    return title + (f", {n_runs} runs)" if n_runs > 1 else ")")


def plot_result(
    result: RangeTestResult,
    path: str | Path | None = None,
    *,
    suggestion: Suggestion | None = None,
    title: str | None = None,
) -> Any:
    """Draw ``result`` (all its runs) with the suggested bounds; save to ``path`` if given.

    Renders with matplotlib's Agg canvas (no display, the pyplot backend is left alone); the x
    axis is logarithmic for ``mode="exp"``. Returns the matplotlib Figure.
    """
    # A bare Figure renders with the Agg canvas and never touches pyplot or the global backend.
    from matplotlib.figure import Figure

    runs = result.runs
    acc_names = [m for m in ("train_acc", "val_acc") if _recorded(runs, m)]
    n_rows = 2 if acc_names else 1
    fig = Figure(figsize=(8, 3.4 * n_rows), constrained_layout=True)
    axes = [fig.add_subplot(n_rows, 1, k + 1) for k in range(n_rows)]
    _plot_loss(axes[0], runs)
    if acc_names:
        _plot_accuracy(axes[1], runs, acc_names)
    for ax in axes:
        if result.mode == "exp":
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        if suggestion is not None and suggestion.ok:
            _mark(ax, suggestion, labelled=ax is axes[0])
    axes[-1].set_xlabel("learning rate" + (" (log scale)" if result.mode == "exp" else ""))
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(title if title is not None else _default_title(result), fontsize=10)
    if path is not None:
        atomic_save_figure(fig, path)
    return fig
