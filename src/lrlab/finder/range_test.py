"""The LR range test (Smith, CLR section 3.3): one short run with a rising learning rate.

One point per *optimizer* step: with ``accumulation_steps=k`` a point averages the ``k``
micro-batch losses of that step. The ladder of rates is evenly spaced: linear
(``start + (end - start) * i / (steps - 1)``, Smith's choice) or geometric (``mode="exp"``).
Step ``i`` records

* ``lr[i]``: the rate of that step;
* ``loss[i]``: the training loss of that step's batch(es), measured before its update;
* ``smoothed_loss[i]``: bias-corrected EMA of ``loss`` (``ema_beta``), the input of the divergence
  rule ``smoothed_loss[i] > diverge_factor * min(smoothed_loss[:i + 1])``;
* ``metrics["train_acc"][i]`` (classification, computed on the same batches, free), and every
  ``val_every`` steps ``metrics["val_loss"]``, ``metrics["val_acc"]`` on the first ``val_samples``
  validation samples (always the same subset), measured *after* that step's update. Steps without
  an evaluation hold NaN.

The test stops at the end of the ladder (``"end"``), when the divergence rule fires
(``"diverged"``; that point is kept), when the loss is NaN/inf (``"nan"``; that point is cut off
and the optimizer step is not taken) or when a one-shot iterator runs out (``"end_of_data"``).

Everything the test touches is restored on return and on error: see :mod:`lrlab.finder.state`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrlab.atomic import atomic_write_text
from lrlab.errors import ConfigError
from lrlab.finder.data import (
    EndOfData,
    batch_size_of,
    check_data,
    is_tensor_pair,
    to_device,
    train_batches,
    val_batches,
)
from lrlab.finder.stability import estimate_edge, optimizer_model
from lrlab.finder.state import preserved_state, restore_state
from lrlab.finder.suggest import (
    Diagnostic,
    Suggestion,
    SuggestOptions,
    bootstrap_readings,
    combine,
    curve_signal,
    options_from,
    read_curve,
    validate_signal,
)

__all__ = [
    "MIN_STEPS",
    "MODES",
    "STOP_REASONS",
    "RangeTestResult",
    "lr_ladder",
    "range_test",
    "repeat_range_test",
]

MODES = ("linear", "exp")
MIN_STEPS = 10
STOP_REASONS = ("end", "diverged", "nan", "end_of_data")
FORMAT = "lrlab.range_test"
FORMAT_VERSION = 1

MetricFn = Callable[[torch.Tensor, torch.Tensor], float]


def lr_ladder(start_lr: float, end_lr: float, steps: int, mode: str = "linear") -> np.ndarray:
    """The evenly spaced rates of a range test (``steps`` values from ``start_lr`` to ``end_lr``)."""
    _check_ladder(start_lr, end_lr, steps, mode)
    if mode == "linear":
        return np.linspace(float(start_lr), float(end_lr), int(steps))
    return np.geomspace(float(start_lr), float(end_lr), int(steps))


def _check_ladder(start_lr: Any, end_lr: Any, steps: Any, mode: Any) -> None:
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    for name, v in (("start_lr", start_lr), ("end_lr", end_lr)):
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float, np.floating, np.integer))
            or not math.isfinite(v)
        ):
            raise ConfigError(f"{name} must be a finite number, got {v!r}")
    if mode == "exp" and start_lr <= 0:
        raise ConfigError(
            f"start_lr must be > 0 for mode='exp' (a geometric ladder), got {start_lr!r}"
        )
    if start_lr < 0:
        raise ConfigError(f"start_lr must be >= 0, got {start_lr!r}")
    if not start_lr < end_lr:
        raise ConfigError(
            f"start_lr must be < end_lr, got start_lr={start_lr!r} >= end_lr={end_lr!r}"
        )
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < MIN_STEPS:
        raise ConfigError(f"steps must be an integer >= {MIN_STEPS}, got {steps!r}")


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ----------------------------------------------------------------------------- result


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
        out = []
        for name in ("val_acc", "train_acc", "val_loss"):
            v = self.metrics.get(name)
            if v is not None and np.isfinite(v).sum() >= min_points:
                out.append(name)
        out.append("loss")
        return out

    def _curve(self, signal: str) -> tuple[np.ndarray, np.ndarray, str]:
        if signal == "loss":
            values, kind = self.loss, "loss"
        else:
            if signal not in self.metrics:
                raise ConfigError(
                    f"signal {signal!r} was not recorded; recorded: "
                    f"{', '.join(['loss', *sorted(self.metrics)])}"
                )
            values = self.metrics[signal]
            kind = "accuracy" if signal.endswith("acc") else "loss"
        mask = np.isfinite(values)
        if signal == "loss":
            mask = np.ones(len(values), bool)
        lr, y = self.lr[mask], values[mask]
        y, _ = curve_signal(y, kind)
        return lr, y, kind

    def _edge(self) -> float | None:
        if self.stop_reason != "diverged":
            return None
        est = estimate_edge(self.lr, self.loss, self.config.get("optimizer_model"))
        return None if est is None else est["lr"]

    def _read(
        self, signal: str, options: SuggestOptions
    ) -> tuple[Any, np.ndarray, np.ndarray, float | None]:
        """(reading, lr, higher-is-better curve, stability edge) of this run."""
        lr, y, kind = self._curve(signal)
        edge = self._edge()
        reading = read_curve(
            lr,
            y,
            kind=kind,
            stop_reason=self.stop_reason,
            edge_lr=edge,
            options=options,
            signal_name=signal,
        )
        return reading, lr, y, edge

    def suggest(
        self,
        signal: str = "auto",
        options: SuggestOptions | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Suggestion:
        """Read ``base_lr``, ``max_lr`` and a single ``lr`` (see :mod:`lrlab.finder.suggest`).

        ``signal``: ``"auto"`` (validation accuracy, else training accuracy, else validation loss,
        else training loss), or one of those names. ``options`` / keyword overrides: fields of
        :class:`~lrlab.finder.suggest.SuggestOptions` (``window``, ``backoff``, ``bootstrap``, ...).
        With repeats, every run is read and the median of each bound is reported with its spread
        over the runs; with a single run the spread comes from a block bootstrap of the curve.
        """
        validate_signal(signal)
        opts = options_from(options, **overrides)
        if signal == "auto":
            signal = self.available_signals(opts.min_points)[0]
        runs = self.runs
        primary, lr, y, edge = self._read(signal, opts)
        if len(runs) > 1:
            readings = [primary] + [r._read(signal, opts)[0] for r in runs[1:]]
            sug = combine(
                primary,
                readings,
                method="repeats",
                signal=signal,
                options=opts,
                n_runs=len(runs),
                use_median=True,
            )
        else:
            kind = self._curve(signal)[2]
            reps = (
                bootstrap_readings(
                    lr,
                    y,
                    kind=kind,
                    stop_reason=self.stop_reason,
                    edge_lr=edge,
                    options=opts,
                    signal_name=signal,
                )
                if primary.max_lr is not None
                else []
            )
            sug = combine(primary, reps, method="bootstrap", signal=signal, options=opts)
        codes = set(sug.codes)
        if (
            all(r.stop_reason in ("end", "end_of_data") for r in runs)
            and "fall" not in sug.candidates
            and "never_diverged" not in codes
        ):
            sug.diagnostics.append(
                Diagnostic(
                    "never_diverged",
                    f"the loss never diverged and {signal} never fell: end_lr may be below "
                    "the top of the useful range",
                )
            )
        if any(r.stop_reason == "nan" for r in runs):
            sug.diagnostics.append(
                Diagnostic(
                    "nan", "the loss became NaN/inf; the curve was cut at the last finite point"
                )
            )
        return sug

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


# ----------------------------------------------------------------------------- running


def _is_classification(out: Any, y: Any, loss_fn: Any) -> str | None:
    if not isinstance(out, torch.Tensor) or not isinstance(y, torch.Tensor):
        return None
    if isinstance(loss_fn, torch.nn.BCEWithLogitsLoss) and out.shape == y.shape:
        return "binary"
    if (
        out.ndim >= 2
        and out.shape[1] >= 2
        and not torch.is_floating_point(y)
        and not torch.is_complex(y)
        and y.dtype != torch.bool
        and tuple(y.shape) == (out.shape[0], *out.shape[2:])
    ):
        return "multiclass"
    return None


def _correct(out: torch.Tensor, y: torch.Tensor, kind: str) -> tuple[float, int]:
    with torch.no_grad():
        if kind == "binary":
            ok = (out > 0) == (y > 0.5)
        else:
            ok = out.argmax(dim=1) == y
        return float(ok.sum().item()), int(ok.numel())


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        if isinstance(g["lr"], torch.Tensor):
            g["lr"].fill_(lr)
        else:
            g["lr"] = lr


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.random.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


def _evaluate(model, loss_fn, val_data, budget, batch_size, device, kind_hint, metric_fns):
    was_training = model.training
    model.eval()
    tot_loss, tot_n, correct, counted = 0.0, 0, 0.0, 0
    extra = {name: 0.0 for name in metric_fns}
    kind = kind_hint
    try:
        with torch.no_grad():
            for bx, by in val_batches(val_data, budget=budget, batch_size=batch_size):
                bx, by = to_device(bx, device), to_device(by, device)
                out = model(bx)
                k = batch_size_of(bx)
                tot_loss += float(loss_fn(out, by).item()) * k
                tot_n += k
                if kind == "auto":
                    kind = _is_classification(out, by, loss_fn)
                if kind in ("binary", "multiclass"):
                    c, m = _correct(out, by, kind)
                    correct += c
                    counted += m
                for name, fn in metric_fns.items():
                    extra[name] += float(fn(out, by)) * k
    finally:
        model.train(was_training)
    res = {"val_loss": tot_loss / tot_n if tot_n else math.nan}
    if counted:
        res["val_acc"] = correct / counted
    for name in metric_fns:
        res[f"val_{name}"] = extra[name] / tot_n if tot_n else math.nan
    return res


def _run_once(
    model,
    optimizer,
    loss_fn,
    train_data,
    *,
    val_data,
    lrs,
    mode,
    accumulation_steps,
    batch_size,
    seed,
    ema_beta,
    diverge_factor,
    val_every,
    val_samples,
    val_batch_size,
    metrics,
    grad_scaler,
    clip_grad_norm,
    device,
    progress,
    config,
) -> RangeTestResult:
    _seed_all(seed)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    metric_fns: dict[str, MetricFn] = dict(metrics) if isinstance(metrics, Mapping) else {}
    classify = "auto" if metrics == "auto" else None
    rec_lr: list[float] = []
    rec_loss: list[float] = []
    rec_smooth: list[float] = []
    rec: dict[str, list[float]] = {}
    batches = train_batches(train_data, batch_size=batch_size, seed=seed)
    avg, best = 0.0, math.inf
    stop_reason, stop_lr = "end", None
    steps = len(lrs)
    use_scaler = grad_scaler is not None and getattr(grad_scaler, "is_enabled", lambda: True)()
    t0 = time.perf_counter()
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("range test", total=steps)
    try:
        for i, lr in enumerate(lrs):
            _set_lr(optimizer, float(lr))
            step_loss, n_seen, correct, counted = 0.0, 0, 0.0, 0
            extra = {name: 0.0 for name in metric_fns}
            finite = True
            try:
                for _ in range(accumulation_steps):
                    bx, by = next(batches)
                    bx, by = to_device(bx, device), to_device(by, device)
                    out = model(bx)
                    loss = loss_fn(out, by)
                    lv = float(loss.detach().item())
                    if not math.isfinite(lv):
                        finite = False
                        break
                    k = batch_size_of(bx)
                    step_loss += lv
                    n_seen += k
                    if classify == "auto":
                        classify = _is_classification(out, by, loss_fn) or "none"
                    if classify in ("binary", "multiclass"):
                        c, m = _correct(out.detach(), by, classify)
                        correct += c
                        counted += m
                    for name, fn in metric_fns.items():
                        extra[name] += float(fn(out.detach(), by)) * k
                    scaled = loss / accumulation_steps
                    (grad_scaler.scale(scaled) if use_scaler else scaled).backward()
            except EndOfData:
                stop_reason = "end_of_data"
                break
            if not finite:
                stop_reason, stop_lr = "nan", float(lr)
                optimizer.zero_grad(set_to_none=True)
                break
            if clip_grad_norm is not None:
                if use_scaler:
                    grad_scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            if use_scaler:
                grad_scaler.step(optimizer)
                grad_scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            mean_loss = step_loss / accumulation_steps
            avg = ema_beta * avg + (1.0 - ema_beta) * mean_loss
            smooth = avg / (1.0 - ema_beta ** (i + 1))
            rec_lr.append(float(lr))
            rec_loss.append(mean_loss)
            rec_smooth.append(smooth)
            point: dict[str, float] = {}
            if counted:
                point["train_acc"] = correct / counted
            for name in metric_fns:
                point[f"train_{name}"] = extra[name] / max(n_seen, 1)
            if val_data is not None and (i % val_every == 0 or i == steps - 1):
                point.update(
                    _evaluate(
                        model,
                        loss_fn,
                        val_data,
                        val_samples,
                        val_batch_size,
                        device,
                        "auto" if metrics == "auto" else None,
                        metric_fns,
                    )
                )
            for key, v in point.items():
                rec.setdefault(key, [math.nan] * i).append(v)
            for key in rec:
                if len(rec[key]) < i + 1:
                    rec[key].append(math.nan)
            if bar is not None:
                bar.update(task, advance=1, description=f"range test lr={lr:.3g} loss={smooth:.4g}")
            if diverge_factor is not None and best > 0 and smooth > diverge_factor * best:
                stop_reason, stop_lr = "diverged", float(lr)
                break
            best = min(best, smooth)
    finally:
        if bar is not None:
            bar.stop()
    n = len(rec_lr)
    if stop_reason == "end" and n:
        stop_lr = rec_lr[-1]
    cfg = dict(config, seed=int(seed), steps_done=n)
    return RangeTestResult(
        lr=np.asarray(rec_lr, dtype=float),
        loss=np.asarray(rec_loss, dtype=float),
        smoothed_loss=np.asarray(rec_smooth, dtype=float),
        metrics={k: np.asarray(v[:n], dtype=float) for k, v in rec.items()},
        stop_reason=stop_reason,
        stop_lr=stop_lr,
        config=cfg,
        elapsed_s=time.perf_counter() - t0,
    )


def range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    train_data: Any,
    *,
    val_data: Any = None,
    start_lr: float,
    end_lr: float,
    steps: int,
    mode: str = "linear",
    batch_size: int = 64,
    accumulation_steps: int = 1,
    seed: int = 0,
    repeats: int = 1,
    seeds: Sequence[int] | None = None,
    ema_beta: float = 0.9,
    diverge_factor: float | None = 4.0,
    val_every: int | None = None,
    val_samples: int = 1024,
    val_batch_size: int | None = None,
    metrics: str | Mapping[str, MetricFn] | None = "auto",
    grad_scaler: Any = None,
    clip_grad_norm: float | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> RangeTestResult:
    """Run an LR range test and return what it recorded; the model, optimizer, scaler and RNG states
    are exactly as before when it returns (or raises).

    Arguments:
        model, optimizer, loss_fn: ``loss_fn(model(x), y)`` must return a scalar tensor.
        train_data: an ``(x, y)`` tensor pair (shuffled with a ``torch.Generator`` seeded with
            ``seed``, ``batch_size`` rows per batch) or an iterable of ``(x, y)`` batches such as a
            DataLoader (restarted when it runs out).
        val_data: optional, same formats (re-iterable); the first ``val_samples`` samples are
            evaluated every ``val_every`` steps (default ``max(1, steps // 50)``) and at the last.
        start_lr, end_lr, steps, mode: the ladder, ``steps >= 10`` optimizer steps, ``"linear"`` or
            ``"exp"``.
        accumulation_steps: micro-batches per optimizer step (one point per optimizer step).
        seed: seeds ``random``, NumPy, torch (and CUDA if initialised) for the run and the data order.
        repeats / seeds: run the test ``repeats`` times (seeds ``seed, seed+1, ...``) or once per
            entry of ``seeds``, each from the same initial state; extra runs go to ``.repeats`` and
            ``suggest()`` reports the spread over them.
        ema_beta: smoothing of ``smoothed_loss`` (bias-corrected EMA; 0 disables).
        diverge_factor: stop when the smoothed loss exceeds this multiple of its best (None: never).
        metrics: ``"auto"`` (accuracy for classification outputs), None, or ``{name: fn(out, y)}``.
        grad_scaler: a ``torch.amp.GradScaler`` to scale the backward pass (restored afterwards).
        clip_grad_norm: optional gradient-norm clipping before each step.
        device: where batches go (default: the device of the model's first parameter).
    """
    # ---- validate everything before any training
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if not callable(loss_fn):
        raise ConfigError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    _check_ladder(start_lr, end_lr, steps, mode)
    batch_size = _check_int("batch_size", batch_size, 1)
    accumulation_steps = _check_int("accumulation_steps", accumulation_steps, 1)
    seed = _check_int("seed", seed, 0)
    repeats = _check_int("repeats", repeats, 1)
    val_samples = _check_int("val_samples", val_samples, 1)
    if val_every is None:
        val_every = max(1, int(steps) // 50)
    val_every = _check_int("val_every", val_every, 1)
    val_batch_size = _check_int(
        "val_batch_size", val_batch_size if val_batch_size is not None else max(256, batch_size), 1
    )
    if not (isinstance(ema_beta, (int, float)) and 0.0 <= ema_beta < 1.0):
        raise ConfigError(f"ema_beta must be in [0, 1), got {ema_beta!r}")
    if diverge_factor is not None and not (
        isinstance(diverge_factor, (int, float)) and diverge_factor > 1.0
    ):
        raise ConfigError(f"diverge_factor must be > 1 or None, got {diverge_factor!r}")
    if clip_grad_norm is not None and not (
        isinstance(clip_grad_norm, (int, float)) and clip_grad_norm > 0
    ):
        raise ConfigError(f"clip_grad_norm must be > 0 or None, got {clip_grad_norm!r}")
    if not (
        metrics is None
        or metrics == "auto"
        or (isinstance(metrics, Mapping) and all(callable(f) for f in metrics.values()))
    ):
        raise ConfigError(
            "metrics must be 'auto', None, or a mapping of name -> fn(output, target)"
        )
    if seeds is not None:
        seeds = [_check_int("seeds[]", s, 0) for s in seeds]
        if not seeds:
            raise ConfigError("seeds must not be empty")
    else:
        seeds = [seed + k for k in range(repeats)]
    check_data(train_data, "train_data")
    if val_data is not None:
        check_data(val_data, "val_data", reiterable=True)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)

    lrs = lr_ladder(start_lr, end_lr, steps, mode)
    config = {
        "start_lr": float(start_lr),
        "end_lr": float(end_lr),
        "steps": int(steps),
        "mode": mode,
        "batch_size": batch_size if is_tensor_pair(train_data) else None,
        "accumulation_steps": accumulation_steps,
        "ema_beta": float(ema_beta),
        "diverge_factor": None if diverge_factor is None else float(diverge_factor),
        "val_every": val_every if val_data is not None else None,
        "val_samples": val_samples if val_data is not None else None,
        "model": type(model).__name__,
        "optimizer": type(optimizer).__name__,
        "optimizer_model": optimizer_model(optimizer),
        "device": str(device),
    }
    runs: list[RangeTestResult] = []
    # One host copy of the state; every repeat starts from it, and it is put back at the end.
    with preserved_state(model, optimizer, grad_scaler) as snapshot:
        for k, s in enumerate(seeds):
            if k:
                restore_state(snapshot, model, optimizer, grad_scaler)
            runs.append(
                _run_once(
                    model,
                    optimizer,
                    loss_fn,
                    train_data,
                    val_data=val_data,
                    lrs=lrs,
                    mode=mode,
                    accumulation_steps=accumulation_steps,
                    batch_size=batch_size,
                    seed=s,
                    ema_beta=ema_beta,
                    diverge_factor=diverge_factor,
                    val_every=val_every,
                    val_samples=val_samples,
                    val_batch_size=val_batch_size,
                    metrics=metrics,
                    grad_scaler=grad_scaler,
                    clip_grad_norm=clip_grad_norm,
                    device=device,
                    progress=progress,
                    config=config,
                )
            )
    first = runs[0]
    first.repeats = runs[1:]
    return first


def repeat_range_test(
    model,
    optimizer,
    loss_fn,
    train_data,
    *,
    repeats: int = 5,
    seeds: Sequence[int] | None = None,
    **kwargs: Any,
) -> RangeTestResult:
    """``range_test`` over several seeds / data orders (``repeats`` runs, or one per ``seeds``);
    ``result.suggest()`` then reports the median bounds and their spread over the runs."""
    if seeds is None:
        _check_int("repeats", repeats, 1)
    return range_test(model, optimizer, loss_fn, train_data, repeats=repeats, seeds=seeds, **kwargs)
