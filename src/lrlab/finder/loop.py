"""One run of the range test: the rates of a ladder, one optimizer step each (see
:mod:`lrlab.finder.api` for what is recorded and when the run stops)."""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from lrlab.errors import ConfigError
from lrlab.finder.data import (
    EndOfData,
    batch_size_of,
    to_device,
    train_batches,
    val_batches,
    validation_subset,
)
from lrlab.finder.result import RangeTestResult
from lrlab.torch import set_hyperparam

__all__ = ["MetricFn", "RunOptions", "Trainee", "run_once"]

MetricFn = Callable[[torch.Tensor, torch.Tensor], float]


class Trainee(NamedTuple):
    """The live objects a run trains (and the range test restores)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[Any, Any], Any]
    grad_scaler: Any = None


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs besides the live objects and its seed, checked by ``range_test``.

    ``classify``: detect classification outputs and record accuracy (``metrics="auto"``);
    ``metric_fns``: the user's ``{name: fn(output, target)}``; ``val_every`` is ignored without
    validation data. ``config`` is what the result records about the test.
    """

    lrs: tuple[float, ...]
    batch_size: int
    mode: str = "linear"
    accumulation_steps: int = 1
    ema_beta: float = 0.9
    diverge_factor: float | None = 4.0
    val_every: int = 1
    val_samples: int = 1024
    val_batch_size: int = 256
    classify: bool = True
    metric_fns: Mapping[str, MetricFn] = field(default_factory=dict)
    clip_grad_norm: float | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = False
    config: Mapping[str, Any] = field(default_factory=dict)


def scalar_loss(loss: Any, *, training: bool) -> torch.Tensor:
    """``loss_fn``'s result, checked: a one-element tensor (with a gradient, when training)."""
    if not isinstance(loss, torch.Tensor):
        hint = " (return the tensor, not .item())" if isinstance(loss, int | float) else ""
        raise ConfigError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}{hint}")
    if loss.numel() != 1:
        raise ConfigError(
            f"loss_fn must return a scalar tensor, got shape {tuple(loss.shape)} "
            "(reduce it, e.g. with .mean())"
        )
    if training and not loss.requires_grad:
        raise ConfigError(
            "loss_fn must return a tensor that requires grad (is the output detached?)"
        )
    return loss


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


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.random.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


@dataclass
class _Sums:
    """Losses, accuracy counts and metric sums over the batches of one step or evaluation."""

    loss: float = 0.0  # sum of batch losses (training) or of sample-weighted ones (validation)
    samples: int = 0
    correct: float = 0.0
    counted: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def add(self, out: torch.Tensor, y: Any, k: int, kind: str | None, fns) -> None:
        self.samples += k
        if kind in ("binary", "multiclass"):
            c, m = _correct(out, y, kind)
            self.correct += c
            self.counted += m
        for name, fn in fns.items():
            self.extra[name] = self.extra.get(name, 0.0) + float(fn(out, y)) * k

    def metrics(self, prefix: str, fns) -> dict[str, float]:
        out = {f"{prefix}acc": self.correct / self.counted} if self.counted else {}
        for name in fns:
            out[f"{prefix}{name}"] = self.extra.get(name, 0.0) / max(self.samples, 1)
        return out


def _evaluate(t: Trainee, val: Any, opts: RunOptions) -> dict[str, float]:
    """Loss (and accuracy, metrics) on the run's validation samples, in eval mode."""
    was_training = t.model.training
    t.model.eval()
    sums = _Sums()
    kind: str | None = "auto" if opts.classify else None
    try:
        with torch.no_grad():
            for bx, by in val_batches(val, budget=opts.val_samples, batch_size=opts.val_batch_size):
                bx, by = to_device(bx, opts.device), to_device(by, opts.device)
                out = t.model(bx)
                k = batch_size_of(bx)
                sums.loss += float(scalar_loss(t.loss_fn(out, by), training=False).item()) * k
                if kind == "auto":
                    kind = _is_classification(out, by, t.loss_fn)
                sums.add(out, by, k, kind, opts.metric_fns)
    finally:
        t.model.train(was_training)
    if not sums.samples:
        return {"val_loss": math.nan, **{f"val_{n}": math.nan for n in opts.metric_fns}}
    return {"val_loss": sums.loss / sums.samples, **sums.metrics("val_", opts.metric_fns)}


class _Run:
    """One run: steps along the ladder and records a point per optimizer step."""

    def __init__(self, t: Trainee, train_data: Any, val_data: Any, opts: RunOptions, seed: int):
        self.t, self.opts, self.seed = t, opts, seed
        self.batches = train_batches(train_data, batch_size=opts.batch_size, seed=seed)
        self.val = (
            None
            if val_data is None
            else validation_subset(val_data, budget=opts.val_samples, seed=seed)
        )
        self.kind: str | None = "auto" if opts.classify else None
        scaler = t.grad_scaler
        self.use_scaler = scaler is not None and getattr(scaler, "is_enabled", lambda: True)()
        self.avg, self.best = 0.0, math.inf
        self.stop_reason: str = "end"
        self.stop_lr: float | None = None
        self.lr: list[float] = []
        self.loss: list[float] = []
        self.smooth: list[float] = []
        self.metrics: dict[str, list[float]] = {}

    def _accumulate(self) -> _Sums | None:
        """Forward and backward over one step's micro-batches; None when a loss is not finite."""
        t, k = self.t, self.opts.accumulation_steps
        sums = _Sums()
        for _ in range(k):
            bx, by = next(self.batches)
            bx, by = to_device(bx, self.opts.device), to_device(by, self.opts.device)
            out = t.model(bx)
            loss = scalar_loss(t.loss_fn(out, by), training=True)
            value = float(loss.detach().item())
            if not math.isfinite(value):
                return None
            sums.loss += value
            if self.kind == "auto":
                self.kind = _is_classification(out, by, t.loss_fn) or "none"
            sums.add(out.detach(), by, batch_size_of(bx), self.kind, self.opts.metric_fns)
            scaled = loss / k
            (t.grad_scaler.scale(scaled) if self.use_scaler else scaled).backward()
        return sums

    def _update(self) -> None:
        t, clip = self.t, self.opts.clip_grad_norm
        if clip is not None:
            if self.use_scaler:
                t.grad_scaler.unscale_(t.optimizer)
            torch.nn.utils.clip_grad_norm_(t.model.parameters(), clip)
        if self.use_scaler:
            t.grad_scaler.step(t.optimizer)
            t.grad_scaler.update()
        else:
            t.optimizer.step()
        t.optimizer.zero_grad(set_to_none=True)

    def _record(self, i: int, lr: float, sums: _Sums) -> None:
        o = self.opts
        mean_loss = sums.loss / o.accumulation_steps
        self.avg = o.ema_beta * self.avg + (1.0 - o.ema_beta) * mean_loss
        self.lr.append(lr)
        self.loss.append(mean_loss)
        self.smooth.append(self.avg / (1.0 - o.ema_beta ** (i + 1)))
        point = sums.metrics("train_", o.metric_fns)
        if self.val is not None and (i % o.val_every == 0 or i == len(o.lrs) - 1):
            point.update(_evaluate(self.t, self.val, o))
        for key, v in point.items():  # a metric first seen now holds NaN before
            self.metrics.setdefault(key, [math.nan] * i).append(v)
        for values in self.metrics.values():
            if len(values) < i + 1:
                values.append(math.nan)

    def step(self, i: int, lr: float) -> bool:
        """Take step ``i`` at rate ``lr``; True when the run stops here."""
        for group in self.t.optimizer.param_groups:
            set_hyperparam(group, "lr", lr)
        try:
            sums = self._accumulate()
        except EndOfData:
            self.stop_reason = "end_of_data"
            return True
        if sums is None:  # not finite: the point is cut off and its step not taken
            self.stop_reason, self.stop_lr = "nan", lr
            self.t.optimizer.zero_grad(set_to_none=True)
            return True
        self._update()
        self._record(i, lr, sums)
        smooth, factor = self.smooth[-1], self.opts.diverge_factor
        if factor is not None and self.best > 0 and smooth > factor * self.best:
            self.stop_reason, self.stop_lr = "diverged", lr
            return True
        self.best = min(self.best, smooth)
        return False

    def result(self, elapsed_s: float) -> RangeTestResult:
        n = len(self.lr)
        stop_lr = self.lr[-1] if self.stop_reason == "end" and n else self.stop_lr
        return RangeTestResult(
            lr=np.asarray(self.lr, dtype=float),
            loss=np.asarray(self.loss, dtype=float),
            smoothed_loss=np.asarray(self.smooth, dtype=float),
            metrics={k: np.asarray(v[:n], dtype=float) for k, v in self.metrics.items()},
            stop_reason=self.stop_reason,
            stop_lr=stop_lr,
            config=dict(self.opts.config, seed=int(self.seed), steps_done=n),
            elapsed_s=elapsed_s,
        )


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[float, float], None]]:
    """A progress bar's update function (one that does nothing when disabled)."""
    if not enabled:
        yield lambda lr, loss: None
        return
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    task = bar.add_task("range test", total=total)
    try:
        yield lambda lr, loss: bar.update(
            task, advance=1, description=f"range test lr={lr:.3g} loss={loss:.4g}"
        )
    finally:
        bar.stop()


def run_once(
    t: Trainee, train_data: Any, val_data: Any, opts: RunOptions, seed: int
) -> RangeTestResult:
    """One run from the current state, seeded with ``seed`` (data order, validation points,
    ``random`` / NumPy / torch); the caller restores the state afterwards."""
    _seed_all(seed)
    t.model.train()
    t.optimizer.zero_grad(set_to_none=True)
    run = _Run(t, train_data, val_data, opts, seed)
    t0 = time.perf_counter()
    with _progress(opts.progress, len(opts.lrs)) as advance:
        for i, lr in enumerate(opts.lrs):
            stopped = run.step(i, float(lr))
            if run.smooth:
                advance(float(lr), run.smooth[-1])
            if stopped:
                break
    return run.result(time.perf_counter() - t0)
