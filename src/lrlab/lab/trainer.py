"""The lab trainer: one trial = one (task, model, schedule, optimizer, seed) training run.

Design choices, and why:

* **In-memory data, no DataLoader.** Every lab dataset fits in memory, so the tensors live on the
  training device and a mini-batch is an index into them. Shuffling is a ``torch.randperm`` drawn
  from a private ``torch.Generator`` seeded from the trial seed, on the CPU, so the batch order is
  the same on CPU and CUDA and never touches the global RNG. It removes the loader's per-batch
  overhead, which matters most for the small models a sweep runs many times (see
  ``benchmarks/trainer_throughput.py`` for the measured gain against a textbook ``DataLoader``).
* **Bit-identical reruns.** The model is initialised right after ``torch.manual_seed(seed)``
  (inside ``torch.random.fork_rng``, so the caller's RNG state is left alone); on CPU with the same
  thread count the same spec gives identical numbers. ``threads`` pins ``torch.set_num_threads``
  for the trial (1 per sweep worker), which is also what makes CPU reductions repeatable.
* **The learning rate comes only from lrlab.** ``lrlab.torch.Scheduler`` sets the optimizer's
  ``lr`` (and the hyper-parameters of ``spec.hyperparams``, e.g. ``momentum``): ``step()`` after every optimizer step (``lr_interval="step"``) or once per epoch
  (``"epoch"``), and ``step(val_loss)`` once per epoch after evaluation, which feeds
  metric-driven policies without advancing time (plain schedules ignore it).
* **Best-validation checkpoint** (RALR's Algorithm 1): the weights of the epoch with the lowest
  validation loss are kept in host memory; ``best_test_acc`` is the test accuracy of that epoch.
* **Divergence is a result, not an error.** A non-finite training (or validation) loss ends the
  trial early with ``diverged=True``, so one absurd learning rate never stops a sweep.
* **Data-parallel under torchrun.** When ``torch.distributed`` is initialised with more than one
  rank, the same trial is trained with ``DistributedDataParallel``: every rank draws the same
  permutation and takes a strided shard of each global batch, so batches and steps per epoch are
  those of the single-process trial (see :func:`train_trial`; the entry point is
  ``python -m lrlab.lab.torchrun_trial``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from lrlab.errors import ConfigError
from lrlab.lab.contract import (
    LR_INTERVALS,
    OPTIMIZER_DEFAULTS,
    TRAINER_VERSION,
    EpochRecord,
    TrialResult,
    TrialSpec,
    normalize_optimizer,
)

__all__ = [
    "EVAL_BATCH_SIZE",
    "LR_INTERVALS",
    "OPTIMIZER_DEFAULTS",
    "TRAINER_VERSION",
    "EpochRecord",
    "TrialResult",
    "TrialSpec",
    "derive_seed",
    "evaluate",
    "iterations_per_epoch",
    "make_optimizer",
    "normalize_optimizer",
    "rank_and_world",
    "resolve_device",
    "train_trial",
]

#: Evaluation batch size (no gradients, so larger than training batches; BN is in eval mode, so
#: the results do not depend on it).
EVAL_BATCH_SIZE = 1024

# --------------------------------------------------------------------------------------------
# Optimizers


def make_optimizer(params, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    """A torch optimizer from a (normalised) config. Its ``lr`` starts at 0 and is set by the
    lrlab Scheduler as soon as the scheduler is built."""
    config = normalize_optimizer(config)
    kwargs = {k: v for k, v in config.items() if k != "type"}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    return cls[config["type"]](params, lr=0.0, **kwargs)


# --------------------------------------------------------------------------------------------
# Helpers of the training loop


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process in ``torch.distributed``; ``(0, 1)`` when no process
    group is initialised. ``train_trial`` trains data-parallel when the world size is above 1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def iterations_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer iterations (mini-batches) in one epoch (the last, smaller batch is kept, like a DataLoader's
    default): the factor between per-epoch and per-step schedule horizons."""
    return -(-int(n_train) // int(batch_size))


def derive_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for one purpose (e.g. the batch order) from the trial seed, so
    weight init and data order are not driven by the same random stream."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@contextlib.contextmanager
def _trial_environment(device: torch.device, threads: int | None) -> Iterator[None]:
    """Pin the thread count and isolate the global RNG (and cuDNN flags) for one trial, then put
    everything back, so running a trial has no side effect on the caller."""
    old_threads = torch.get_num_threads()
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    cudnn = torch.backends.cudnn
    old_cudnn = (cudnn.deterministic, cudnn.benchmark)
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        if device.type == "cuda":
            cudnn.deterministic, cudnn.benchmark = True, False
        with torch.random.fork_rng(devices=cuda_devices):
            yield
    finally:
        torch.set_num_threads(old_threads)
        cudnn.deterministic, cudnn.benchmark = old_cudnn


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE
) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` on ``(x, y)``, in eval mode, batched."""
    if len(y) == 0:
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, len(y), batch_size):
        logits = model(x[i : i + batch_size])
        yb = y[i : i + batch_size]
        loss += F.cross_entropy(logits, yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    return loss.item() / len(y), correct.item() / len(y)


@dataclass
class _EpochStats:
    """Running sums of one training epoch (on the device, so CUDA is not synced every step)."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0
    lrs: list[float] = field(default_factory=list)
    finite: bool = True

    def lr_summary(self) -> tuple[float, float, float]:
        """(mean, min, max) of the learning rates used; a constant LR is reported exactly."""
        if not self.lrs:
            return math.nan, math.nan, math.nan
        lo, hi = min(self.lrs), max(self.lrs)
        mean = lo if lo == hi else math.fsum(self.lrs) / len(self.lrs)
        return mean, lo, hi


# --------------------------------------------------------------------------------------------
# Data-parallel training: every difference from a single-process trial is in this class


@dataclass(frozen=True)
class _Ranks:
    """This process's place in ``torch.distributed`` (``world == 1``: a single process), and
    every difference data-parallel training makes.

    With world size ``w > 1`` the model is wrapped in ``DistributedDataParallel`` (gloo on the
    CPU; nccl on CUDA with ``device_ids=[device]``, the device defaulting to the current CUDA
    device). Every rank draws the same epoch permutation from the seeded generator and rank
    ``r`` trains on ``batch[r::w]`` of each global batch of ``spec.batch_size`` samples; the
    shard's summed loss is scaled so that the averaged gradient is the global batch's mean
    gradient. So the global batch size and the optimizer steps per epoch (hence the schedule's
    time axis) are the single-process trial's, and the numbers match it up to float rounding
    (BatchNorm models: batch statistics are per shard; running statistics are rank 0's).
    ``train_loss`` / ``train_acc`` are summed over ranks (``all_reduce`` of sums and counts).
    Evaluation runs on every rank on the whole validation and test sets with the unwrapped
    model (identical weights, and BatchNorm buffers broadcast from rank 0 first, so identical
    numbers); ``sched.step(val_loss)`` averages over ranks anyway. Divergence is checked once
    per epoch and agreed on by ``all_reduce``, so every rank stops at the same epoch. Every rank
    returns the same records (``seconds`` and ``wall_time`` are its own) and calls ``on_epoch``.
    """

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> _Ranks:
        return cls(*rank_and_world())

    def device(self, dev: torch.device) -> torch.device:
        if self.world > 1 and dev.type == "cuda" and dev.index is None:
            return torch.device("cuda", torch.cuda.current_device())
        return dev

    def wrap(self, model: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
        """``model`` itself, or wrapped in DistributedDataParallel (CUDA: on this device)."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if dev.type == "cuda":
            return DistributedDataParallel(model, device_ids=[dev.index])
        return DistributedDataParallel(model)

    def batch_loss(self, net, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
        """``(loss to backpropagate, summed loss, logits, labels)`` of this rank's share of the
        global batch ``idx`` (``idx[rank::world]``)."""
        if self.world == 1:
            logits = net(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            return loss, loss.detach().double() * len(idx), logits, y[idx]
        shard = idx[self.rank :: self.world]
        logits = net(x[shard])
        loss_sum = F.cross_entropy(logits, y[shard], reduction="sum")
        # DDP averages gradients over ranks, so scale this shard's summed loss by world / batch:
        # the gradient of the global batch's mean loss, also when shards differ in size or one
        # is empty (the last batch)
        return loss_sum * (self.world / len(idx)), loss_sum.detach().double(), logits, y[shard]

    def after_epoch(self, model: torch.nn.Module) -> None:
        """BatchNorm running statistics: rank 0's, as DDP's next forward would use."""
        if self.world > 1:
            import torch.distributed as dist

            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def reduce(self, sums: list[float], dev: torch.device) -> list[float]:
        """Sum a few numbers over all ranks (float64; on the device for nccl, else the CPU)."""
        if self.world == 1:
            return sums
        import torch.distributed as dist

        where = dev if dist.get_backend() == "nccl" else torch.device("cpu")
        total = torch.tensor(sums, dtype=torch.float64, device=where)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.tolist()


def _train_epoch(
    net, optimizer, sched, task, order, spec: TrialSpec, ranks: _Ranks, check_each_step: bool
) -> _EpochStats:
    """One pass over the training set in a seeded random order; stops at a non-finite loss.

    Returns this rank's sums (the caller reduces them over ranks)."""
    device = task.x_train.device
    n = len(task.y_train)
    stats = _EpochStats(
        loss_sum=torch.zeros((), dtype=torch.float64, device=device),
        correct=torch.zeros((), dtype=torch.int64, device=device),
    )
    perm = torch.randperm(n, generator=order).to(device)
    net.train()
    for start in range(0, n, spec.batch_size):
        idx = perm[start : start + spec.batch_size]
        loss, loss_sum, logits, yb = ranks.batch_loss(net, task.x_train, task.y_train, idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stats.lrs.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        if spec.lr_interval == "step":
            sched.step()
        stats.loss_sum += loss_sum
        stats.correct += (logits.detach().argmax(1) == yb).sum()
        stats.seen += len(yb)
        if check_each_step and not math.isfinite(loss.item()):
            stats.finite = False
            break
    return stats


class _Best:
    """The best-validation checkpoint (RALR's Algorithm 1): the epoch with the lowest finite
    validation loss, its test accuracy and, only when asked for, its weights. The weights are
    copied into one host buffer allocated at the first improvement and reused after (no copy at
    all unless ``keep_state``)."""

    def __init__(self, keep_state: bool):
        self.keep_state = keep_state
        self.epoch, self.val_loss, self.test_acc = 0, math.inf, math.nan
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, record: EpochRecord, model: torch.nn.Module) -> None:
        if not record.val_loss < self.val_loss:
            return
        self.epoch, self.val_loss, self.test_acc = record.epoch, record.val_loss, record.test_acc
        if not self.keep_state:
            return
        with torch.no_grad():
            current = model.state_dict()
            if self.state is None:
                self.state = {k: v.detach().to("cpu", copy=True) for k, v in current.items()}
            else:
                for key, value in current.items():
                    self.state[key].copy_(value)


def _epoch(net, model, optimizer, sched, task, order, spec, ranks, check_each_step, epoch):
    """Train one epoch, evaluate, and return ``(record, diverged)``."""
    t0 = time.perf_counter()
    dev = task.x_train.device
    stats = _train_epoch(net, optimizer, sched, task, order, spec, ranks, check_each_step)
    ranks.after_epoch(model)
    lr_mean, lr_min, lr_max = stats.lr_summary()
    val_loss, val_acc = evaluate(model, task.x_val, task.y_val)
    test_loss, test_acc = evaluate(model, task.x_test, task.y_test)
    finite = stats.finite and math.isfinite(stats.loss_sum.item()) and math.isfinite(val_loss)
    # epoch sums over ranks; a non-finite loss on any rank stops them all
    loss_sum, correct, seen, bad = ranks.reduce(
        [stats.loss_sum.item(), stats.correct.item(), stats.seen, float(not finite)], dev
    )
    train_loss = loss_sum / max(seen, 1)
    record = EpochRecord(
        epoch=epoch,
        train_loss=train_loss,
        train_acc=correct / max(seen, 1),
        val_loss=val_loss,
        val_acc=val_acc,
        test_loss=test_loss,
        test_acc=test_acc,
        lr=lr_mean,
        lr_min=lr_min,
        lr_max=lr_max,
        seconds=time.perf_counter() - t0,
    )
    return record, not (bad == 0 and math.isfinite(train_loss))


# --------------------------------------------------------------------------------------------
# The trial


def _trial_task(spec: TrialSpec, task, dev: torch.device):
    from lrlab.lab.contract import is_code_ref
    from lrlab.lab.tasks import load_any_task

    if task is None:
        task = load_any_task(
            spec.task or "", data_dir=spec.data_dir, code_dir=spec.code_dir, device=dev
        )
    elif task.name != spec.task and not is_code_ref(spec.task):
        raise ConfigError(f"task: the spec says {spec.task!r} but the task given is {task.name!r}")
    task = task.to(dev)
    if len(task.y_train) == 0:
        raise ConfigError(f"task {task.name!r} has an empty training set")
    return task


def _setup(spec: TrialSpec, task, dev: torch.device, ranks: _Ranks):
    """``(model, net, optimizer, scheduler, batch-order generator)``: the model initialised right
    after ``torch.manual_seed(seed)``, the order from an independent seed."""
    from lrlab.lab.models import build_any_model
    from lrlab.schedules import from_config
    from lrlab.torch import Scheduler

    schedule = from_config(spec.schedule)
    torch.manual_seed(spec.seed)
    model = build_any_model(spec.model or "", task, code_dir=spec.code_dir).to(dev)
    optimizer = make_optimizer(model.parameters(), spec.optimizer)
    # the hyper-parameters follow their schedules step for step with the learning rate
    sched = Scheduler(optimizer, schedule, hyperparams=spec.hyperparams or None)
    order = torch.Generator(device="cpu").manual_seed(derive_seed(spec.seed, "batch-order"))
    return model, ranks.wrap(model, dev), optimizer, sched, order


def train_trial(
    spec: TrialSpec,
    *,
    device: str | torch.device | None = None,
    threads: int | None = 1,
    on_epoch: Callable[[EpochRecord], Any] | None = None,
    task=None,
    keep_best_state: bool = False,
) -> TrialResult:
    """Train ``spec`` and return its per-epoch records and summary.

    Args:
        spec: the trial.
        device: ``None`` / ``"auto"`` picks CUDA when available, else the CPU.
        threads: torch CPU threads for this trial (restored afterwards); ``None`` leaves it.
        on_epoch: called with each :class:`EpochRecord` as soon as the epoch is done.
        task: an already loaded :class:`~lrlab.lab.tasks.Task` named ``spec.task`` (a sweep
            loads it once for many trials); by default it is loaded from ``spec``.
        keep_best_state: also return the best epoch's weights in ``result.best_state``.

    **Data-parallel** under ``torchrun`` (``torch.distributed`` initialised with world size
    above 1; call it on every rank): the same trial, the same global batches and steps per
    epoch, trained with DistributedDataParallel; see :class:`_Ranks` for the details.
    """
    started = time.perf_counter()
    ranks = _Ranks.current()
    dev = ranks.device(resolve_device(device))
    with _trial_environment(dev, threads):
        task = _trial_task(spec, task, dev)
        model, net, optimizer, sched, order = _setup(spec, task, dev, ranks)
        check_each_step = dev.type == "cpu" and ranks.world == 1  # ranks must stop together
        records: list[EpochRecord] = []
        best = _Best(keep_best_state)
        for epoch in range(1, spec.epochs + 1):
            args = (net, model, optimizer, sched, task, order, spec, ranks, check_each_step)
            record, diverged = _epoch(*args, epoch)
            records.append(record)
            if not diverged:
                best.update(record, model)
            if on_epoch is not None:
                on_epoch(record)
            if diverged:
                break
            sched.step(record.val_loss)  # metric-driven policies decide on this epoch's val loss
            if spec.lr_interval == "epoch":
                sched.step()
    return TrialResult(
        spec=spec,
        epochs=records,
        diverged=diverged,
        best_epoch=best.epoch,
        best_val_loss=best.val_loss,
        best_test_acc=best.test_acc,
        final_test_acc=records[-1].test_acc,
        wall_time=time.perf_counter() - started,
        best_state=best.state,
    )
