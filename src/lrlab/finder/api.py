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
  ``val_every`` steps ``metrics["val_loss"]``, ``metrics["val_acc"]`` on ``val_samples``
  validation samples (the same ones at every evaluation of a run; drawn with the run's seed from
  a larger tensor pair: :func:`~lrlab.finder.data.validation_subset`), measured *after* that
  step's update. Steps without an evaluation hold NaN.

The test stops at the end of the ladder (``"end"``), when the divergence rule fires
(``"diverged"``; that point is kept), when the loss is NaN/inf (``"nan"``; that point is cut off
and the optimizer step is not taken) or when a one-shot iterator runs out (``"end_of_data"``).

Everything the test touches is restored on return and on error: see :mod:`lrlab.finder.state`.

Arguments of :func:`range_test`:

model, optimizer, loss_fn: ``loss_fn(model(x), y)`` must return a scalar tensor.
train_data: an ``(x, y)`` tensor pair (shuffled with a ``torch.Generator`` seeded with the
    run's seed, ``batch_size`` rows per batch) or an iterable of ``(x, y)`` batches such as
    a DataLoader (restarted when it runs out).
val_data: optional, same formats (re-iterable); ``val_samples`` samples are evaluated every
    ``val_every`` steps (default ``max(1, steps // 50)``) and at the last: drawn with the
    run's seed from a larger tensor pair, else the first ``val_samples``.
start_lr, end_lr, steps, mode: the ladder, ``10 <= steps <= 1e6`` optimizer steps,
    ``"linear"`` or ``"exp"``.
accumulation_steps: micro-batches per optimizer step (one point per optimizer step).
seed: seeds ``random``, NumPy, torch (and CUDA if initialised), the data order and the
    validation points of the run.
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

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from lrlab import validate
from lrlab.errors import ConfigError
from lrlab.finder.constants import MAX_REPEATS, MAX_STEPS, MIN_STEPS, MODES, STOP_REASONS
from lrlab.finder.data import check_data, is_tensor_pair
from lrlab.finder.loop import MetricFn, RunOptions, Trainee, run_once
from lrlab.finder.result import RangeTestResult
from lrlab.finder.stability import optimizer_model
from lrlab.finder.state import preserved_state, restore_state

__all__ = [
    "MIN_STEPS",
    "MODES",
    "STOP_REASONS",
    "RangeTestResult",
    "lr_ladder",
    "range_test",
    "repeat_range_test",
]


#: The keyword arguments of ``range_test`` that ``_run_options`` checks.
_SETTINGS = (
    "start_lr",
    "end_lr",
    "steps",
    "mode",
    "batch_size",
    "accumulation_steps",
    "ema_beta",
    "diverge_factor",
    "val_every",
    "val_samples",
    "val_batch_size",
    "metrics",
    "clip_grad_norm",
    "device",
    "progress",
)


def lr_ladder(start_lr: float, end_lr: float, steps: int, mode: str = "linear") -> np.ndarray:
    """The evenly spaced rates of a range test (``steps`` values from ``start_lr`` to ``end_lr``).

    >>> lr_ladder(0.0, 1.0, 11).tolist()[:3], lr_ladder(1e-3, 1e-2, 10, "exp")[[0, -1]].tolist()
    ([0.0, 0.1, 0.2], [0.001, 0.01])
    """
    _check_ladder(start_lr, end_lr, steps, mode)
    if mode == "linear":
        return np.linspace(float(start_lr), float(end_lr), int(steps))
    return np.geomspace(float(start_lr), float(end_lr), int(steps))


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (the checks of ``lrlab.validate`` take those)."""
    return value.item() if isinstance(value, np.generic) else value


def _int(value: Any, where: str, lo: int, hi: int = validate.MAX_INT) -> int:
    """An ``int`` (not an integral float: a count given as 20.0 is a mistake) in ``[lo, hi]``."""
    value = _plain(value)
    if isinstance(value, float):
        raise ConfigError(f"{where} must be an integer >= {lo}, got {validate.describe(value)}")
    return validate.integer(value, where, lo=lo, hi=hi)


def _optional_real(value: Any, where: str, **bounds: Any) -> float | None:
    return None if value is None else validate.real(_plain(value), where, **bounds)


def _check_ladder(start_lr: Any, end_lr: Any, steps: Any, mode: Any) -> None:
    if not (isinstance(mode, str) and mode in MODES):
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {validate.describe(mode)}")
    start = validate.real(_plain(start_lr), "start_lr", lo=0.0)
    end = validate.real(_plain(end_lr), "end_lr")
    if mode == "exp" and start <= 0:
        raise ConfigError(
            f"start_lr must be > 0 for mode='exp' (a geometric ladder), got {start_lr!r}"
        )
    if not start < end:
        raise ConfigError(
            f"start_lr must be < end_lr, got start_lr={start_lr!r} >= end_lr={end_lr!r}"
        )
    _int(steps, "steps", MIN_STEPS, MAX_STEPS)


def _check_objects(model: Any, optimizer: Any, loss_fn: Any, grad_scaler: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if not callable(loss_fn):
        raise ConfigError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    needed = ("scale", "step", "update", "state_dict", "load_state_dict")
    if grad_scaler is not None and not all(hasattr(grad_scaler, m) for m in needed):
        raise ConfigError(
            f"grad_scaler must be a torch.amp.GradScaler or None, got {type(grad_scaler).__name__}"
        )


def _check_data(train_data: Any, val_data: Any, runs: int) -> None:
    every_run = "each of the repeated runs reads it from the start" if runs > 1 else ""
    check_data(train_data, "train_data", reiterable=every_run)
    if val_data is not None:
        check_data(val_data, "val_data", reiterable="it is read again at every evaluation")


def _seeds(seed: Any, repeats: Any, seeds: Any) -> list[int]:
    """The seed of every run: ``seeds`` as given, else ``seed, seed + 1, ...`` (``repeats``)."""
    base = _int(seed, "seed", 0)
    count = _int(repeats, "repeats", 1, MAX_REPEATS)
    if seeds is None:
        return [base + k for k in range(count)]
    if isinstance(seeds, np.ndarray):
        seeds = seeds.tolist()
    checked = validate.sequence(
        seeds, "seeds", lambda v, where: _int(v, where, 0), min_len=1, max_len=MAX_REPEATS
    )
    return list(checked)


def _metrics(metrics: Any) -> tuple[bool, dict[str, MetricFn]]:
    """(detect accuracy?, the user's metric functions) from ``metrics``."""
    if metrics is None:
        return False, {}
    if isinstance(metrics, str) and metrics == "auto":
        return True, {}
    if isinstance(metrics, Mapping) and all(
        isinstance(k, str) and callable(f) for k, f in metrics.items()
    ):
        return False, dict(metrics)
    raise ConfigError("metrics must be 'auto', None, or a mapping of name -> fn(output, target)")


def _usable_devices() -> list[str]:
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def _device(device: Any, model: torch.nn.Module) -> torch.device:
    """``device``, checked by allocating on it (default: where the model's parameters are)."""
    if device is None:
        p = next(model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")
    try:
        checked = torch.device(device)
        torch.empty(0, device=checked)
    except Exception:  # torch raises RuntimeError, AssertionError or TypeError, by backend
        raise ConfigError(
            f"device must be one this machine has ({', '.join(_usable_devices())}), "
            f"got {validate.describe(device)}"
        ) from None
    return checked


def _run_options(model: torch.nn.Module, settings: Mapping[str, Any]) -> RunOptions:
    """Check the numeric settings of ``range_test`` and gather them, with the ladder."""
    s = settings
    steps = int(s["steps"])
    batch_size = _int(s["batch_size"], "batch_size", 1)
    every, val_batch = s["val_every"], s["val_batch_size"]
    classify, fns = _metrics(s["metrics"])
    return RunOptions(
        lrs=tuple(float(v) for v in lr_ladder(s["start_lr"], s["end_lr"], steps, s["mode"])),
        batch_size=batch_size,
        mode=s["mode"],
        accumulation_steps=_int(s["accumulation_steps"], "accumulation_steps", 1),
        ema_beta=validate.real(_plain(s["ema_beta"]), "ema_beta", lo=0.0, hi=1.0, hi_open=True),
        diverge_factor=_optional_real(s["diverge_factor"], "diverge_factor", lo=1.0, lo_open=True),
        val_every=_int(max(1, steps // 50) if every is None else every, "val_every", 1),
        val_samples=_int(s["val_samples"], "val_samples", 1),
        val_batch_size=_int(
            max(256, batch_size) if val_batch is None else val_batch, "val_batch_size", 1
        ),
        classify=classify,
        metric_fns=fns,
        clip_grad_norm=_optional_real(s["clip_grad_norm"], "clip_grad_norm", lo=0.0, lo_open=True),
        device=_device(s["device"], model),
        progress=validate.boolean(s["progress"], "progress"),
    )


def _config(
    opts: RunOptions, model: Any, optimizer: Any, train_data: Any, val_data: Any
) -> dict[str, Any]:
    """What a result records about the test that made it."""
    has_val = val_data is not None
    return {
        "start_lr": opts.lrs[0],
        "end_lr": opts.lrs[-1],
        "steps": len(opts.lrs),
        "mode": opts.mode,
        "batch_size": opts.batch_size if is_tensor_pair(train_data) else None,
        "accumulation_steps": opts.accumulation_steps,
        "ema_beta": opts.ema_beta,
        "diverge_factor": opts.diverge_factor,
        "val_every": opts.val_every if has_val else None,
        "val_samples": opts.val_samples if has_val else None,
        "model": type(model).__name__,
        "optimizer": type(optimizer).__name__,
        "optimizer_model": optimizer_model(optimizer),
        "device": str(opts.device),
    }


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

    ``loss_fn(model(x), y)`` must return a scalar tensor; ``train_data`` / ``val_data`` are
    ``(x, y)`` tensor pairs or iterables of batches; ``start_lr``, ``end_lr``, ``steps`` and
    ``mode`` make the ladder. Every argument is described in the module docstring
    (``help(lrlab.finder.api)``) and in docs/range-test.md. Each is checked before anything is
    trained: a bad one raises a one-line :class:`~lrlab.errors.ConfigError` naming it, and so does
    a ``loss_fn`` that returns something other than a scalar tensor (the state is then restored).
    """
    settings = {name: value for name, value in locals().items() if name in _SETTINGS}
    _check_objects(model, optimizer, loss_fn, grad_scaler)
    _check_ladder(start_lr, end_lr, steps, mode)
    run_seeds = _seeds(seed, repeats, seeds)
    _check_data(train_data, val_data, len(run_seeds))
    opts = _run_options(model, settings)
    opts = replace(opts, config=_config(opts, model, optimizer, train_data, val_data))
    trainee = Trainee(model, optimizer, loss_fn, grad_scaler)
    runs: list[RangeTestResult] = []
    # One host copy of the state; every repeat starts from it, and it is put back at the end.
    with preserved_state(model, optimizer, grad_scaler) as snapshot:
        for k, run_seed in enumerate(run_seeds):
            if k:
                restore_state(snapshot, model, optimizer, grad_scaler)
            runs.append(run_once(trainee, train_data, val_data, opts, run_seed))
    runs[0].repeats = runs[1:]
    return runs[0]


def repeat_range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    train_data: Any,
    *,
    repeats: int = 5,
    seeds: Sequence[int] | None = None,
    **kwargs: Any,
) -> RangeTestResult:
    """``range_test`` over several seeds / data orders (``repeats`` runs, or one per ``seeds``);
    ``result.suggest()`` then reports the median bounds and their spread over the runs."""
    return range_test(model, optimizer, loss_fn, train_data, repeats=repeats, seeds=seeds, **kwargs)
