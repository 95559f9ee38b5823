"""Plot of a range test: loss (top) and accuracy (bottom) against the learning rate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrlab.atomic import atomic_save_figure

if TYPE_CHECKING:  # pragma: no cover
    from lrlab.finder.result import RangeTestResult
    from lrlab.finder.suggest import Suggestion

__all__ = ["plot_result"]


def plot_result(
    result: RangeTestResult,
    path: str | Path | None = None,
    *,
    suggestion: Suggestion | None = None,
    title: str | None = None,
) -> Any:
    """Draw ``result`` (all its runs) with the suggested bounds; save to ``path`` if given.

    Renders with matplotlib's Agg canvas (no display, the pyplot backend is left alone); the x axis is logarithmic for ``mode="exp"``.
    Returns the matplotlib Figure.
    """
    # A bare Figure renders with the Agg canvas and never touches pyplot or the global backend.
    from matplotlib.figure import Figure

    from lrlab.finder.smoothing import centred_window, odd_window

    runs = result.runs
    acc_names = [
        m
        for m in ("train_acc", "val_acc")
        if any(m in r.metrics and np.isfinite(r.metrics[m]).any() for r in runs)
    ]
    val_loss = any(
        "val_loss" in r.metrics and np.isfinite(r.metrics["val_loss"]).any() for r in runs
    )
    n_rows = 2 if acc_names else 1
    fig = Figure(figsize=(8, 3.4 * n_rows), constrained_layout=True)
    axes = [fig.add_subplot(n_rows, 1, k + 1) for k in range(n_rows)]
    log_x = result.mode == "exp"
    colors = {
        "loss": "tab:blue",
        "val_loss": "tab:orange",
        "train_acc": "tab:blue",
        "val_acc": "tab:orange",
    }

    ax = axes[0]
    for k, r in enumerate(runs):
        first = k == 0
        ax.plot(
            r.lr,
            r.loss,
            color=colors["loss"],
            alpha=0.25 if first else 0.1,
            lw=0.8,
            label="training loss (raw)" if first else None,
        )
        ax.plot(
            r.lr,
            r.smoothed_loss,
            color=colors["loss"],
            alpha=1.0 if first else 0.35,
            lw=1.5,
            label="training loss (EMA)" if first else None,
        )
        if val_loss and "val_loss" in r.metrics:
            m = np.isfinite(r.metrics["val_loss"])
            ax.plot(
                r.lr[m],
                r.metrics["val_loss"][m],
                "o-",
                ms=2.5,
                color=colors["val_loss"],
                alpha=1.0 if first else 0.35,
                lw=1,
                label="validation loss" if first else None,
            )
    finite = np.concatenate([r.loss[np.isfinite(r.loss)] for r in runs]) if runs else np.array([])
    if len(finite):
        lo, hi = np.min(finite), np.percentile(finite, 98)
        if hi > lo:
            ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo))
    ax.set_ylabel("loss")

    if acc_names:
        ax2 = axes[1]
        for k, r in enumerate(runs):
            first = k == 0
            for name in acc_names:
                if name not in r.metrics:
                    continue
                v = r.metrics[name]
                m = np.isfinite(v)
                if name == "train_acc":
                    ax2.plot(
                        r.lr[m], v[m], color=colors[name], alpha=0.2 if first else 0.08, lw=0.8
                    )
                    w = odd_window(int(m.sum()), 0.1)
                    ax2.plot(
                        r.lr[m],
                        centred_window(v[m], w),
                        color=colors[name],
                        alpha=1.0 if first else 0.35,
                        lw=1.5,
                        label="training accuracy (centred mean)" if first else None,
                    )
                else:
                    ax2.plot(
                        r.lr[m],
                        v[m],
                        "o-",
                        ms=2.5,
                        lw=1,
                        color=colors[name],
                        alpha=1.0 if first else 0.35,
                        label="validation accuracy" if first else None,
                    )
        ax2.set_ylabel("accuracy")

    for a in axes:
        if log_x:
            a.set_xscale("log")
        a.grid(True, alpha=0.3)
        if suggestion is not None and suggestion.ok:
            for key, style, color in (
                ("base_lr", "--", "tab:green"),
                ("max_lr", "--", "tab:red"),
                ("lr", ":", "black"),
            ):
                v = getattr(suggestion, key)
                if v is None:
                    continue
                a.axvline(
                    v,
                    ls=style,
                    color=color,
                    lw=1.2,
                    label=f"{key} = {v:.3g}" if a is axes[0] else None,
                )
                s = suggestion.spread.get(key)
                if s is not None and s.n > 1 and key != "lr":
                    a.axvspan(s.q25, s.q75, color=color, alpha=0.12)
    axes[-1].set_xlabel("learning rate" + (" (log scale)" if log_x else ""))
    for a in axes:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8, loc="best")
    if title is None:
        title = f"LR range test ({result.mode}, {len(result)} steps, stopped: {result.stop_reason}"
        title += f", {len(runs)} runs)" if len(runs) > 1 else ")"
    fig.suptitle(title, fontsize=10)
    if path is not None:
        atomic_save_figure(fig, path)
    return fig
