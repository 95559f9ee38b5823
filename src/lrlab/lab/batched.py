"""Many trials trained at once: K trials of one architecture as one computation.

The lab's models are tiny (5,210 and 15,210 parameters), so a CPU runs one trial's training step
at a few percent of its arithmetic peak: per-operator overhead dominates. Stacking K trials'
parameters and running one batched matrix product per layer pays that overhead once for all of
them (``benchmarks/batched_trials.py`` measures the gain against today's one-by-one lab).

What each trial keeps to itself, exactly as :func:`lrlab.lab.trainer.train_trial` would have it:

* **its initial weights**: built under its own seed with the same builder, then stacked (one
  seeded init of a stacked model would not reproduce K separate inits);
* **its data order**: its own ``torch.Generator`` seeded from its seed, drawing the same
  permutation per epoch, hence the same mini-batches;
* **its learning rate at every step**, from its own schedule or policy (:class:`TrialRate`
  steps it exactly as ``lrlab.torch.Scheduler`` steps an optimizer; a policy observes the
  trial's own validation loss once per epoch), and so every hyper-parameter of
  ``spec.hyperparams`` (momentum, weight decay, ...: a per-step column of the optimizer);
* **its optimizer state** (rows of ``(K, P)`` tensors, :mod:`lrlab.lab.batched_optim`) and
  hyperparameters (columns: momentum, weight decay, betas, eps may differ per trial);
* **its best-validation checkpoint**, its records, and its divergence: a trial whose loss is
  not finite is marked diverged and *dropped from the stack*, so the others are unaffected (each
  trial is its own slice of every batched product; nothing is reduced across trials).

Results are :class:`~lrlab.lab.trainer.TrialResult` objects with the fields ``train_trial``
fills, computed the same way, so a sweep stores them unchanged. Timings are shares of the batch:
``EpochRecord.seconds`` is the batch's epoch time divided by the trials trained in that epoch, and
``wall_time`` is the trial's epochs plus an equal share of the set-up, so the trials' wall times add
up to the batch's.

The numbers are those of one-by-one training up to float rounding (batched products sum in
another order), which a few epochs of training amplify: ``tests/test_lab_batched.py`` states the
tolerances (initial weights and batches: identical; metrics: per trial after 1-3 epochs).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lrlab.lab.batched_nets import BatchedNet, make_net
from lrlab.lab.batched_optim import make_batched_optimizer, optimizer_shape
from lrlab.lab.trainer import (
    EVAL_BATCH_SIZE,
    EpochRecord,
    TrialResult,
    TrialSpec,
    _EpochStats,
    _trial_environment,
    derive_seed,
    iterations_per_epoch,
    resolve_device,
    train_trial,
)
from lrlab.policies.driver import as_driver

#: Models trained batched, and by which engine of :mod:`lrlab.lab.batched_nets` (measured
#: fastest: see ``benchmarks/batched_trials.py``). Every other model trains one by one.
BATCHED_ENGINES: dict[str, str] = {"mlp": "bmm", "cnn": "bmm"}
#: Largest K stacked on a CPU. Throughput is flat from K = 10 to 40 (measured for the CNN,
#: 2 workers: 1409 / 1517 / 1418 trials per CPU-minute at K = 10 / 20 / 40; the step is bound by
#: the batched products), so a larger K only adds memory and time to the first result.
CPU_MAX_TRIALS = 32
#: Largest K on a GPU (not measured here; memory usually binds first for larger models).
GPU_MAX_TRIALS = 512
#: Rows of one trial in an evaluation chunk: fixed, not shared out among the K trials, so a
#: trial's evaluation sums (and so its losses, to the last bit) do not depend on how many
#: trials it is batched with — a resumed sweep batches the remaining trials differently.
EVAL_ROWS_PER_TRIAL = 256

OnEpoch = Callable[[TrialSpec, EpochRecord], Any]
#: glibc ``mallopt`` settings applied once per process by the batched trainer on Linux: serve
#: blocks up to 32 MiB from the heap and keep up to 256 MiB of freed heap. A batched step
#: allocates and frees the same few MiB-sized tensors every step; with glibc's defaults the freed
#: top of the heap goes back to the OS and is faulted in again (measured: 300-700 page faults per
#: CNN step at K = 20, a quarter of its CPU time; 20-50 with these settings).
MALLOC_SETTINGS = {-3: 32 * 2**20, -1: 256 * 2**20}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
_malloc_tuned = False


def _keep_freed_memory() -> None:
    """Apply :data:`MALLOC_SETTINGS` (once; a no-op off glibc). The process then keeps up to
    256 MiB of freed memory for reuse instead of returning it to the OS."""
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt, Windows)
        return
    for param, value in MALLOC_SETTINGS.items():
        mallopt(param, value)


# --------------------------------------------------------------------------------------------
# What can train together


def not_batchable_reason(model: str | None) -> str | None:
    """``None`` when model ``model`` trains batched, else why it trains one by one.

    >>> not_batchable_reason("cnn") is None
    True
    >>> not_batchable_reason("resnet20")
    "model 'resnet20' has no batched implementation (batched: cnn, mlp); its trials train one by one"
    """
    if model in BATCHED_ENGINES:
        return None
    return (
        f"model {model!r} has no batched implementation (batched: "
        f"{', '.join(sorted(BATCHED_ENGINES))}); its trials train one by one"
    )


def batchable(model: str | None) -> bool:
    """Whether trials of model ``model`` train K at a time (see :func:`not_batchable_reason`)."""
    return not_batchable_reason(model) is None


def batch_key(spec: TrialSpec) -> tuple:
    """Specs with equal keys can train in one batch: same task (and data), model, batch size,
    epochs, LR interval, optimizer *shape* (type, momentum on/off, nesterov, amsgrad) and
    scheduled hyper-parameters (their keys). Their schedules, seeds and optimizer values
    (momentum, weight decay, betas, eps) may differ. The device is not part of a spec: a batch
    runs on the device :func:`train_trials` is given."""
    driven = tuple(sorted(spec.hyperparams))
    return (
        spec.task,
        spec.data_dir,
        spec.model,
        spec.batch_size,
        spec.epochs,
        spec.lr_interval,
        optimizer_shape(spec.optimizer, driven),
        driven,
    )


def plan_batches(specs: Iterable[TrialSpec], k: int, workers: int = 1) -> list[list[TrialSpec]]:
    """Split ``specs`` into batches of at most ``k`` compatible specs (equal :func:`batch_key`),
    into at least ``workers`` batches per key where there are enough specs, sizes within one of
    each other; the specs' order is kept inside each batch. Non-batchable models: one per batch.
    """
    groups: dict[tuple, list[TrialSpec]] = {}
    for spec in specs:
        groups.setdefault(batch_key(spec), []).append(spec)
    out: list[list[TrialSpec]] = []
    for group in groups.values():
        size = max(1, int(k)) if batchable(group[0].model) else 1
        count = max(-(-len(group) // size), min(max(1, int(workers)), len(group)))
        cuts = [round(i * len(group) / count) for i in range(count + 1)]
        out.extend(group[a:b] for a, b in zip(cuts, cuts[1:]))
    return out


def _activation_floats(model: torch.nn.Module, input_shape: Sequence[int]) -> int:
    """Floats the model's layers output for one sample (hooks on a one-sample forward)."""
    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        total += output.numel() if isinstance(output, torch.Tensor) else 0

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def choose_batch_trials(model: str, task, device=None, cores: int = 1) -> int:
    """K for model ``model`` on ``task`` (a Task, TaskInfo or name): 1 if not batchable, else as
    many trials as fit a per-worker share of memory (``cores`` workers, a quarter of the free
    host memory, or half of the free GPU memory), capped by :data:`CPU_MAX_TRIALS` /
    :data:`GPU_MAX_TRIALS`. Per trial: six copies of the parameters (weights, gradient, two
    optimizer moments, best checkpoint, a temporary) plus three of the activations of
    ``EVAL_BATCH_SIZE`` samples (forward, saved for backward, gradient): a generous bound on a
    training batch or an evaluation chunk of one trial.
    """
    from lrlab.lab.models import build_model, count_parameters
    from lrlab.lab.tasks import task_info

    if not batchable(model):
        return 1
    info = task_info(task) if isinstance(task, str) else task
    with torch.random.fork_rng(devices=[]):
        net = build_model(model, info)
    activations = _activation_floats(net, info.input_shape)
    floats = 6 * count_parameters(net) + 3 * EVAL_BATCH_SIZE * activations
    dev = resolve_device(device)
    if dev.type == "cuda":
        budget, cap = torch.cuda.mem_get_info(dev)[0] / 2, GPU_MAX_TRIALS
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        budget, cap = free / 4 / max(1, int(cores)), CPU_MAX_TRIALS
    return max(1, min(cap, int(budget // (4 * floats))))


# --------------------------------------------------------------------------------------------
# One trial's learning rate


class TrialRate:
    """One trial's learning rate, stepped as ``lrlab.torch.Scheduler`` steps an optimizer: the
    first step uses ``schedule(0)``; :meth:`advance` is ``sched.step()``, :meth:`observe` is
    ``sched.step(metric)`` (a policy's state changes, time does not).

    >>> from lrlab.schedules import from_config
    >>> rate = TrialRate(from_config({"type": "step", "lr": 0.1, "step_size": 2, "gamma": 0.5}))
    >>> rate.epoch_lrs(3, per_step=True), rate.step
    ([0.1, 0.1, 0.05], 3)
    >>> rate.epoch_lrs(2, per_step=False), rate.step
    ([0.05, 0.05], 3)
    """

    def __init__(self, controller: Any):
        self.driver = as_driver(controller)
        self.step = 0
        self.state = self.driver.init()

    def lr(self) -> float:
        """The rate the optimizer uses at the current step (the Scheduler's expression)."""
        return float(self.driver.value(self.state, self.step))

    def advance(self) -> None:
        self.step += 1

    def observe(self, metric: float) -> None:
        if self.driver.stateful:
            self.state = self.driver.observe(self.state, float(metric))

    def epoch_lrs(self, steps: int, per_step: bool) -> list[float]:
        """The rates of the next epoch's ``steps`` steps (a policy's state only changes between
        epochs); advances per step when ``per_step``."""
        if not per_step:
            return [self.lr()] * steps
        out = []
        for _ in range(steps):
            out.append(self.lr())
            self.advance()
        return out


# --------------------------------------------------------------------------------------------
# The batch's state


@dataclass
class _Trial:
    """One trial of a batch: what it keeps to itself, and what it has produced so far."""

    spec: TrialSpec
    rate: TrialRate
    order: torch.Generator
    hyper: dict[str, TrialRate] = field(default_factory=dict)  # spec.hyperparams, stepped alike
    records: list[EpochRecord] = field(default_factory=list)
    best: dict = field(
        default_factory=lambda: {"epoch": 0, "val_loss": math.inf, "test_acc": math.nan}
    )
    best_row: torch.Tensor | None = None
    diverged: bool = False

    def rates(self) -> list[TrialRate]:
        return [self.rate, *self.hyper.values()]

    def result(self, net: BatchedNet, setup_share: float, keep_best_state: bool) -> TrialResult:
        state = None
        if keep_best_state and self.best_row is not None:
            state = net.layout.state_dict(self.best_row)
        return TrialResult(
            spec=self.spec,
            epochs=self.records,
            diverged=self.diverged,
            best_epoch=self.best["epoch"],
            best_val_loss=self.best["val_loss"],
            best_test_acc=self.best["test_acc"],
            final_test_acc=self.records[-1].test_acc,
            wall_time=setup_share + sum(r.seconds for r in self.records),
            best_state=state,
        )


@dataclass
class _Stack:
    """The trials still training: flat parameters ``(K, P)``, optimizer state, their _Trials."""

    net: BatchedNet
    flat: torch.Tensor
    optimizer: Any
    trials: list[_Trial]

    def select(self, rows: list[int]) -> None:
        index = torch.tensor(rows, dtype=torch.long, device=self.flat.device)
        self.flat = self.flat[index]
        self.optimizer.select(index)
        self.trials = [self.trials[i] for i in rows]


def _build_stack(specs: Sequence[TrialSpec], task, dev: torch.device, engine: str) -> _Stack:
    """Each trial's model built under its own seed exactly as ``train_trial`` builds it (right
    after ``torch.manual_seed(seed)``, on the CPU), then stacked; its own data-order generator."""
    from lrlab.lab.models import build_model
    from lrlab.schedules import from_config

    models, trials = [], []
    for spec in specs:
        rate = TrialRate(from_config(spec.schedule))
        hyper = {k: TrialRate(from_config(c)) for k, c in sorted(spec.hyperparams.items())}
        torch.manual_seed(spec.seed)
        models.append(build_model(str(spec.model), task))
        order = torch.Generator(device="cpu").manual_seed(derive_seed(spec.seed, "batch-order"))
        trials.append(_Trial(spec, rate, order, hyper))
    net = make_net(models[0].to(dev), engine)
    flat = net.layout.stack(models).to(dev)
    driven = tuple(sorted(specs[0].hyperparams))  # one batch_key: the same keys in every spec
    optimizer = make_batched_optimizer([s.optimizer for s in specs], dev, driven)
    return _Stack(net, flat, optimizer, trials)


# --------------------------------------------------------------------------------------------
# One epoch


@dataclass
class _EpochRun:
    """Per-epoch rows of the trials still in the stack: batch orders, rates, running sums."""

    perms: torch.Tensor  # (K, n) on the device
    lrs: list[list[float]]
    table: torch.Tensor  # (steps, K) float64 on the device
    loss_sum: torch.Tensor  # (K,) float64
    correct: torch.Tensor  # (K,) int64
    hyper: dict[str, torch.Tensor] = field(default_factory=dict)  # key -> (steps, K) float64

    def hyper_at(self, step: int) -> dict[str, torch.Tensor]:
        """Each scheduled hyper-parameter's ``(K,)`` values at ``step`` of the epoch."""
        return {key: table[step] for key, table in self.hyper.items()}

    def stats(self, i: int, seen: int, steps_done: int, finite: bool = True) -> _EpochStats:
        return _EpochStats(
            self.loss_sum[i], self.correct[i], seen, self.lrs[i][:steps_done], finite
        )

    def select(self, rows: list[int]) -> None:
        index = torch.tensor(rows, dtype=torch.long, device=self.perms.device)
        self.perms, self.table = self.perms[index], self.table[:, index]
        self.loss_sum, self.correct = self.loss_sum[index], self.correct[index]
        self.lrs = [self.lrs[i] for i in rows]
        self.hyper = {key: table[:, index] for key, table in self.hyper.items()}


def _start_epoch(stack: _Stack, n: int, steps: int, per_step: bool) -> _EpochRun:
    dev = stack.flat.device
    perms = torch.stack([torch.randperm(n, generator=t.order) for t in stack.trials])
    lrs = [t.rate.epoch_lrs(steps, per_step) for t in stack.trials]

    def table(rows: list[list[float]]) -> torch.Tensor:  # (steps, K): one row per step
        return torch.tensor(rows, dtype=torch.float64).T.contiguous().to(dev)

    keys = stack.trials[0].hyper if stack.trials else {}
    hyper = {
        key: table([t.hyper[key].epoch_lrs(steps, per_step) for t in stack.trials]) for key in keys
    }
    k = len(stack.trials)
    return _EpochRun(
        perms.to(dev),
        lrs,
        table(lrs),
        torch.zeros(k, dtype=torch.float64, device=dev),
        torch.zeros(k, dtype=torch.int64, device=dev),
        hyper,
    )


@dataclass
class _Left:
    """A trial that left the stack mid-epoch: its epoch so far and its weights when it left."""

    trial: _Trial
    stats: _EpochStats
    row: torch.Tensor


def _drop_non_finite(
    stack: _Stack, run: _EpochRun, loss: torch.Tensor, seen: int, steps_done: int
) -> list[_Left]:
    """Take the trials whose loss is not finite out of the stack (train_trial's per-step check:
    the step is taken, then the epoch stops for that trial)."""
    finite = torch.isfinite(loss).tolist()
    left = [
        _Left(stack.trials[i], run.stats(i, seen, steps_done, False), stack.flat[i].clone())
        for i, ok in enumerate(finite)
        if not ok
    ]
    keep = [i for i, ok in enumerate(finite) if ok]
    stack.select(keep)
    run.select(keep)
    return left


def _train_epoch(
    stack: _Stack, task, spec: TrialSpec, check_each_step: bool
) -> tuple[list[_EpochStats], list[_Left]]:
    """One pass over the training set, each trial in its own seeded order, at its own rates."""
    n, b = len(task.y_train), spec.batch_size
    steps = iterations_per_epoch(n, b)
    run = _start_epoch(stack, n, steps, spec.lr_interval == "step")
    left: list[_Left] = []
    seen = 0
    for step in range(steps):
        idx = run.perms[:, step * b : (step + 1) * b]
        x, y = task.x_train[idx], task.y_train[idx]
        loss, correct, grad = stack.net.loss_and_grad(stack.flat, x, y)
        stack.optimizer.step(stack.flat, grad, run.table[step], run.hyper_at(step))
        run.loss_sum += loss.double() * idx.shape[1]
        run.correct += correct
        seen += idx.shape[1]
        if check_each_step and not bool(torch.isfinite(loss).all()):
            left += _drop_non_finite(stack, run, loss, seen, step + 1)
            if not stack.trials:
                break
    return [run.stats(i, seen, steps) for i in range(len(stack.trials))], left


# --------------------------------------------------------------------------------------------
# Evaluation and bookkeeping


@torch.no_grad()
def evaluate_stacked(
    net: BatchedNet, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[list[float], list[float]]:
    """Per trial ``(mean cross-entropy, accuracy)`` lists on ``(x, y)``, like
    :func:`lrlab.lab.trainer.evaluate` for each row of ``flat``."""
    k, n = flat.shape[0], len(y)
    if n == 0:
        return [math.nan] * k, [math.nan] * k
    loss = torch.zeros(k, dtype=torch.float64, device=flat.device)
    correct = torch.zeros(k, dtype=torch.int64, device=flat.device)
    chunk = EVAL_ROWS_PER_TRIAL
    for i in range(0, n, chunk):
        logits = net.logits(flat, x[i : i + chunk])
        yb = y[i : i + chunk].expand(k, -1)
        logp = torch.log_softmax(logits, -1)
        loss -= logp.gather(-1, yb.unsqueeze(-1)).squeeze(-1).sum(1).double()
        correct += (logits.argmax(-1) == yb).sum(1)
    return (loss / n).tolist(), (correct.double() / n).tolist()


def _record(
    trial: _Trial, epoch: int, stats: _EpochStats, val: tuple, test: tuple, seconds: float
) -> EpochRecord:
    """The epoch's record, the best-validation bookkeeping and the divergence verdict."""
    loss_sum, correct, seen = stats.loss_sum.item(), stats.correct.item(), stats.seen
    lr_mean, lr_min, lr_max = stats.lr_summary()
    train_loss, train_acc = loss_sum / max(seen, 1), correct / max(seen, 1)
    finite = stats.finite and math.isfinite(loss_sum) and math.isfinite(val[0])
    trial.diverged = not (finite and math.isfinite(train_loss))
    record = EpochRecord(
        epoch=epoch,
        train_loss=train_loss,
        train_acc=train_acc,
        val_loss=val[0],
        val_acc=val[1],
        test_loss=test[0],
        test_acc=test[1],
        lr=lr_mean,
        lr_min=lr_min,
        lr_max=lr_max,
        seconds=seconds,
    )
    trial.records.append(record)
    if not trial.diverged and val[0] < trial.best["val_loss"]:
        trial.best.update(epoch=epoch, val_loss=val[0], test_acc=test[1])
    return record


def _finish_epoch(
    stack: _Stack,
    task,
    epoch: int,
    done: tuple[list[_EpochStats], list[_Left]],
    t0: float,
    keep_best_state: bool,
    on_epoch: OnEpoch | None,
) -> None:
    """Evaluate every trial of the epoch at once, record it, step the rates, drop the diverged."""
    stats, left = done
    trials = stack.trials + [entry.trial for entry in left]
    flat = torch.cat([stack.flat] + [entry.row[None] for entry in left])
    val = evaluate_stacked(stack.net, flat, task.x_val, task.y_val)
    test = evaluate_stacked(stack.net, flat, task.x_test, task.y_test)
    seconds = (time.perf_counter() - t0) / len(trials)
    all_stats = stats + [entry.stats for entry in left]
    for i, (trial, st) in enumerate(zip(trials, all_stats)):
        before = trial.best["epoch"]
        record = _record(
            trial, epoch, st, (val[0][i], val[1][i]), (test[0][i], test[1][i]), seconds
        )
        if keep_best_state and trial.best["epoch"] != before:
            trial.best_row = flat[i].to("cpu", copy=True)
        if on_epoch is not None:
            on_epoch(trial.spec, record)
        if not trial.diverged:
            for rate in trial.rates():
                rate.observe(record.val_loss)  # policies decide on this epoch's val loss
                if trial.spec.lr_interval == "epoch":
                    rate.advance()
    stack.select([i for i, t in enumerate(stack.trials) if not t.diverged])


# --------------------------------------------------------------------------------------------
# The batch


def train_trials(
    specs: Sequence[TrialSpec],
    *,
    device: str | torch.device | None = None,
    threads: int | None = 1,
    task=None,
    on_epoch: OnEpoch | None = None,
    keep_best_state: bool = False,
    engine: str | None = None,
) -> list[TrialResult]:
    """Train ``specs`` and return their results, in order, as :func:`train_trial` would.

    Specs with one :func:`batch_key` and a batchable model train as one batch (all of them:
    split a study with :func:`plan_batches` first), a lone spec too, so that a trial's numbers
    do not depend on its batch-mates; other models go to ``train_trial`` one by one. ``task`` is an already
    loaded task; by default each group's task is loaded once per process (and kept for the
    next call); ``on_epoch(spec, record)`` is called
    after each trial's epoch; ``engine`` overrides :data:`BATCHED_ENGINES` (``"bmm"`` or
    ``"vmap"``, for the benchmark). Single process only (no torchrun data parallelism).
    """
    specs = list(specs)
    groups: dict[tuple, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(batch_key(spec), []).append(i)
    results: list[TrialResult | None] = [None] * len(specs)
    for rows in groups.values():
        group = [specs[i] for i in rows]
        # loaded once per process (also for the one-by-one fallback) unless given
        data = task if task is not None else _cached_task(group[0], resolve_device(device))
        if not batchable(group[0].model):
            out = [_one_by_one(s, device, threads, data, on_epoch, keep_best_state) for s in group]
        else:
            engine_name = engine or BATCHED_ENGINES[str(group[0].model)]
            out = _train_batch(group, device, threads, data, on_epoch, keep_best_state, engine_name)
        for i, result in zip(rows, out):
            results[i] = result
    return [r for r in results if r is not None]


def _one_by_one(spec, device, threads, task, on_epoch, keep_best_state) -> TrialResult:
    callback = None if on_epoch is None else (lambda record: on_epoch(spec, record))
    return train_trial(
        spec,
        device=device,
        threads=threads,
        task=task,
        on_epoch=callback,
        keep_best_state=keep_best_state,
    )


#: The task this process loaded last (a sweep worker trains many batches on the same data).
_TASK_CACHE: dict[tuple, Any] = {}


def _cached_task(spec: TrialSpec, dev: torch.device):
    from lrlab.lab.tasks import load_any_task

    key = (spec.task, spec.data_dir, spec.code_dir, str(dev))
    if key not in _TASK_CACHE:
        _TASK_CACHE.clear()  # one task at a time keeps memory flat
        _TASK_CACHE[key] = load_any_task(
            spec.task or "", data_dir=spec.data_dir, code_dir=spec.code_dir, device=dev
        )
    return _TASK_CACHE[key]


def _train_batch(specs, device, threads, task, on_epoch, keep_best_state, engine):
    from lrlab.errors import ConfigError

    started = time.perf_counter()
    dev = resolve_device(device)
    first = specs[0]
    with _trial_environment(dev, threads):
        if task.name != first.task:
            raise ConfigError(
                f"task: the specs say {first.task!r} but the task given is {task.name!r}"
            )
        task = task.to(dev)
        if len(task.y_train) == 0:
            raise ConfigError(f"task {task.name!r} has an empty training set")
        if dev.type == "cpu":
            _keep_freed_memory()
        stack = _build_stack(specs, task, dev, engine)
        trials = list(stack.trials)
        setup_share = (time.perf_counter() - started) / len(trials)
        check_each_step = dev.type == "cpu"
        for epoch in range(1, first.epochs + 1):
            t0 = time.perf_counter()
            done = _train_epoch(stack, task, first, check_each_step)
            _finish_epoch(stack, task, epoch, done, t0, keep_best_state, on_epoch)
            if not stack.trials:
                break
    return [t.result(stack.net, setup_share, keep_best_state) for t in trials]
