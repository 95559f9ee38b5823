"""What a range test recorded (:class:`RangeTestResult`): reading it, saving it, loading it.

No torch here: a result read back from JSON is read and plotted without it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrlab.atomic import atomic_write_text
from lrlab.errors import ConfigError
from lrlab.finder.constants import SIGNALS, signal_kind
from lrlab.finder.fastai import FastaiReading, fastai_readings
from lrlab.finder.stability import estimate_edge
from lrlab.finder.suggest import (
    Diagnostic,
    Reading,
    Suggestion,
    SuggestOptions,
    bootstrap_readings,
    combine,
    curve_signal,
    options_from,
    read_curve,
    validate_signal,
)

__all__ = ["FORMAT", "FORMAT_VERSION", "RangeTestResult"]

FORMAT = "lrlab.range_test"
FORMAT_VERSION = 1


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass
class RangeTestResult:
    """What one range test recorded; ``repeats`` holds the extra runs of a repeated test."""

    lr: np.ndarray
    loss: np.ndarray
    smoothed_loss: np.ndarray
    metrics: dict[str, np.ndarray]
    stop_reason: str
    stop_lr: float | None
    config: dict[str, Any]
    repeats: list[RangeTestResult] = field(default_factory=list)
    elapsed_s: float = 0.0

    # -- basics
    def __len__(self) -> int:
        return len(self.lr)

    @property
    def mode(self) -> str:
        return self.config.get("mode", "linear")

    @property
    def runs(self) -> list[RangeTestResult]:
        """This run followed by its repeats."""
        return [self, *self.repeats]

    def __repr__(self) -> str:
        m = ", ".join(sorted(self.metrics))
        rep = f", repeats={len(self.repeats)}" if self.repeats else ""
        return (
            f"RangeTestResult(points={len(self)}, mode={self.mode!r}, stop_reason={self.stop_reason!r}, "
            f"metrics=[{m}]{rep})"
        )

    # -- reading
    def available_signals(self, min_points: int = SuggestOptions().min_points) -> list[str]:
        """The signals with at least ``min_points`` values, in the order ``"auto"`` prefers."""
        out = []
        for name in SIGNALS[:-1]:
            v = self.metrics.get(name)
            if v is not None and np.isfinite(v).sum() >= min_points:
                out.append(name)
        return [*out, "loss"]

    def _curve(self, signal: str) -> tuple[np.ndarray, np.ndarray, str]:
        """(rates, higher-is-better curve, kind) of ``signal``; evaluations only for metrics."""
        if signal == "loss":
            return self.lr, curve_signal(self.loss, "loss")[0], "loss"
        if signal not in self.metrics:
            raise ConfigError(
                f"signal {signal!r} was not recorded; recorded: "
                f"{', '.join(['loss', *sorted(self.metrics)])}"
            )
        values, kind = self.metrics[signal], signal_kind(signal)
        mask = np.isfinite(values)
        return self.lr[mask], curve_signal(values[mask], kind)[0], kind

    def _edge(self) -> float | None:
        if self.stop_reason != "diverged":
            return None
        est = estimate_edge(self.lr, self.loss, self.config.get("optimizer_model"))
        return None if est is None else est["lr"]

    def _read(self, signal: str, options: SuggestOptions) -> Reading:
        return read_curve(**self._reading_inputs(signal, options))

    def _bootstrap(self, signal: str, options: SuggestOptions) -> list[Reading]:
        return bootstrap_readings(**self._reading_inputs(signal, options))

    def _reading_inputs(self, signal: str, options: SuggestOptions) -> dict[str, Any]:
        """What :func:`read_curve` and :func:`bootstrap_readings` read ``signal`` from."""
        lr, y, kind = self._curve(signal)
        edge_lr = self._edge()
        return dict(
            lr=lr,
            y=y,
            kind=kind,
            stop_reason=self.stop_reason,
            edge_lr=edge_lr,
            options=options,
            signal_name=signal,
        )

    def fastai_readings(self) -> dict[str, FastaiReading]:
        """fastai's ``valley``, ``steep`` and ``minimum`` of this run (see :mod:`lrlab.finder.fastai`)."""
        return fastai_readings(self.lr, self.loss, int(self.config.get("steps") or len(self)))

    def suggest(
        self,
        signal: str = "auto",
        options: SuggestOptions | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Suggestion:
        """Read ``base_lr``, ``max_lr`` and a single ``lr`` (see :mod:`lrlab.finder.suggest`), and
        fastai's ``valley`` / ``steep`` / ``minimum`` beside them (``Suggestion.fastai``).

        ``signal``: ``"auto"`` (validation accuracy, else training accuracy, else validation loss,
        else training loss), or one of those names. ``options`` / keyword overrides: fields of
        :class:`~lrlab.finder.suggest.SuggestOptions` (``window``, ``backoff``, ``bootstrap``, ...).
        With repeats, every run is read and the median of each reading is reported with its spread
        over the runs (its reason quotes the median, every run's value and the median run's
        reason); with a single run the spread of the bounds comes from a block bootstrap.
        """
        validate_signal(signal)
        opts = options_from(options, **overrides)
        if signal == "auto":
            signal = self.available_signals(opts.min_points)[0]
        runs = self.runs
        primary = self._read(signal, opts)
        fastai = [r.fastai_readings() for r in runs]
        if len(runs) > 1:
            readings = [primary] + [r._read(signal, opts) for r in runs[1:]]
            sug = combine(
                primary,
                readings,
                method="repeats",
                signal=signal,
                options=opts,
                n_runs=len(runs),
                use_median=True,
                fastai=fastai,
            )
        else:
            reps = self._bootstrap(signal, opts) if primary.max_lr is not None else []
            sug = combine(
                primary, reps, method="bootstrap", signal=signal, options=opts, fastai=fastai
            )
        sug.diagnostics += self._run_diagnostics(signal, sug)
        return sug

    def _run_diagnostics(self, signal: str, sug: Suggestion) -> list[Diagnostic]:
        """What the runs themselves say: no divergence, a NaN, repeats that did not differ."""
        runs, out = self.runs, []
        if (
            all(r.stop_reason in ("end", "end_of_data") for r in runs)
            and "fall" not in sug.candidates
            and "never_diverged" not in sug.codes
        ):
            out.append(
                Diagnostic(
                    "never_diverged",
                    f"the loss never diverged and {signal} never fell: end_lr may be below "
                    "the top of the useful range",
                )
            )
        if any(r.stop_reason == "nan" for r in runs):
            out.append(
                Diagnostic(
                    "nan", "the loss became NaN/inf; the curve was cut at the last finite point"
                )
            )
        if len(runs) > 1 and all(np.array_equal(r.loss, self.loss) for r in runs[1:]):
            out.append(
                Diagnostic(
                    "identical_repeats",
                    f"the {len(runs)} runs recorded the same training loss, so their spread "
                    "measures nothing: give them different seeds, and data whose order follows "
                    "the seed (a DataLoader with its own generator does not)",
                )
            )
        return out

    # -- serialisation
    def _points(self) -> list[dict[str, Any]]:
        names = sorted(self.metrics)
        pts = []
        for i in range(len(self.lr)):
            p = {
                "step": i,
                "lr": float(self.lr[i]),
                "loss": _nan_to_none(float(self.loss[i])),
                "smoothed_loss": _nan_to_none(float(self.smoothed_loss[i])),
            }
            for m in names:
                p[m] = _nan_to_none(float(self.metrics[m][i]))
            pts.append(p)
        return pts

    def _run_dict(self) -> dict[str, Any]:
        return {
            "stop_reason": self.stop_reason,
            "stop_lr": self.stop_lr,
            "elapsed_s": round(self.elapsed_s, 3),
            "config": self.config,
            "points": self._points(),
        }

    def to_dict(self, *, suggestion: Suggestion | bool | None = True) -> dict[str, Any]:
        """A JSON-ready dict; ``suggestion=True`` computes and embeds ``suggest()`` (None/False: omit)."""
        d: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, **self._run_dict()}
        d["repeats"] = [r._run_dict() for r in self.repeats]
        if suggestion is True:
            suggestion = self.suggest()
        if isinstance(suggestion, Suggestion):
            d["suggestion"] = suggestion.to_dict()
        return d

    def to_json(
        self,
        path: str | Path | None = None,
        *,
        suggestion: Suggestion | bool | None = True,
        indent: int = 2,
    ) -> str:
        """The result as JSON text (NaN written as null); also written to ``path`` when given."""
        text = json.dumps(self.to_dict(suggestion=suggestion), indent=indent, allow_nan=False)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RangeTestResult:
        if d.get("format") not in (FORMAT, None):
            raise ConfigError(f"not a range-test result (format={d.get('format')!r})")

        def run(r: Mapping[str, Any]) -> RangeTestResult:
            pts = r["points"]
            arr = lambda key: np.array(
                [np.nan if p.get(key) is None else p[key] for p in pts], dtype=float
            )
            metric_names = sorted(
                {k for p in pts for k in p} - {"step", "lr", "loss", "smoothed_loss"}
            )
            return cls(
                lr=arr("lr"),
                loss=arr("loss"),
                smoothed_loss=arr("smoothed_loss"),
                metrics={m: arr(m) for m in metric_names},
                stop_reason=r["stop_reason"],
                stop_lr=r.get("stop_lr"),
                config=dict(r.get("config", {})),
                elapsed_s=float(r.get("elapsed_s", 0.0)),
            )

        out = run(d)
        out.repeats = [run(r) for r in d.get("repeats", [])]
        return out

    @classmethod
    def from_json(cls, source: str | Path) -> RangeTestResult:
        """Read a result written by :meth:`to_json` (a path or the JSON text itself)."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            text = Path(source).read_text()
        return cls.from_dict(json.loads(text))

    def to_csv(self, path: str | Path | None = None) -> str:
        """One row per (run, step): run, step, lr, loss, smoothed_loss, metrics (empty for NaN)."""
        names = sorted({m for r in self.runs for m in r.metrics})
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["run", "step", "lr", "loss", "smoothed_loss", *names])

        def cell(v: float) -> str:
            return "" if not np.isfinite(v) else repr(float(v))

        for k, r in enumerate(self.runs):
            for i in range(len(r.lr)):
                row = [k, i, repr(float(r.lr[i])), cell(r.loss[i]), cell(r.smoothed_loss[i])]
                row += [cell(r.metrics[m][i]) if m in r.metrics else "" for m in names]
                w.writerow(row)
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def plot(
        self,
        path: str | Path | None = None,
        *,
        suggestion: Suggestion | bool | None = True,
        title: str | None = None,
    ):
        """Loss and accuracy against the learning rate, suggested bounds marked (matplotlib Agg).

        Returns the figure; saves it to ``path`` when given."""
        from lrlab.finder.plot import plot_result

        if suggestion is True:
            suggestion = self.suggest()
        return plot_result(self, path, suggestion=suggestion or None, title=title)
