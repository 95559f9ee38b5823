"""The sweep runner: run a study's trials in parallel, commit each as it finishes, resume for free.

The driver process owns the results store. It skips every trial whose key is already finished,
*claims* each trial in the store just before handing it out (a lease with a heartbeat, so two
runs on one database share the work and a killed run's claims expire: see
:mod:`lrlab.lab.store`), hands the work to an :class:`Executor`, and writes each trial's rows in
one transaction as soon as its outcome comes back. A sweep killed at any moment loses nothing
that was committed, and the next run picks up where it stopped.

The executor's unit of work is a list of specs (one trial by default; ``batch_trials=K`` groups
up to K trials that :func:`lrlab.lab.batched.batch_key` says can train together and hands them
to :func:`lrlab.lab.batched.train_trials`). Each spec of a unit is claimed and recorded on its
own.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lrlab import validate as V
from lrlab.errors import ConfigError, LrlabError, one_line, unknown_name_error
from lrlab.lab.contract import TrialSpec, TrialStatus
from lrlab.lab.store import Store, default_lease, new_owner, process_alive

#: A custom trial runner: ``fn(spec, *, device=None, threads=1) -> TrialResult``.
TrialFn = Callable[..., Any]
#: ``on_epoch(trial_key, epoch)``: a trial finished an epoch (progress inside running trials).
EpochTick = Callable[[str, int], Any]
Unit = list  # list[TrialSpec]: what an executor runs as one piece of work


class Batch(list):
    """A unit trained as one computation by :func:`lrlab.lab.batched.train_trials`, even when it
    holds one spec: a trial's numbers then do not depend on what it was batched with (a resumed
    sweep batches the remaining trials differently)."""


def default_workers() -> int:
    """One worker per CPU core, each with one torch thread: every core busy, no oversubscription."""
    return max(1, os.cpu_count() or 1)


@dataclass
class Outcome:
    """What an executor yields for one trial: a result, or the one-line error it raised."""

    spec: TrialSpec
    result: Any = None  # TrialResult | MetricsResult | None
    error: str | None = None


@runtime_checkable
class Executor(Protocol):
    """Runs units of work (lists of specs) somewhere and yields one :class:`Outcome` per spec,
    in completion order.

    ``run`` must pull units from ``units`` lazily, only when it has room to start one (the driver
    claims each trial when it is pulled), and must turn a trial's exception into an Outcome with
    ``error`` set rather than raise. ``on_epoch(key, epoch)``, when the executor can, is called
    as trials finish epochs; ``time_limit`` (seconds per trial) ends a trial that runs longer and
    fails it. ``close`` stops whatever is still running.
    """

    def run(
        self,
        units: Iterable[Unit],
        *,
        on_epoch: EpochTick | None = None,
        time_limit: float | None = None,
    ) -> Iterator[Outcome]: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Running one unit (in a worker, or inline)

#: Tasks loaded by this process (a worker trains many trials on the same data).
_TASK_CACHE: dict[tuple, Any] = {}


def _default_trial(spec: TrialSpec, *, device=None, threads: int | None = 1, on_epoch=None):
    """:func:`lrlab.lab.trainer.train_trial` with the task loaded once per process."""
    from lrlab.lab.tasks import load_any_task
    from lrlab.lab.trainer import resolve_device, train_trial

    dev = resolve_device(device)
    key = (spec.task, spec.data_dir, spec.code_dir, str(dev))
    if key not in _TASK_CACHE:
        _TASK_CACHE.clear()  # one task at a time is enough, and keeps memory flat
        _TASK_CACHE[key] = load_any_task(
            spec.task or "", data_dir=spec.data_dir, code_dir=spec.code_dir, device=dev
        )
    return train_trial(spec, device=dev, threads=threads, task=_TASK_CACHE[key], on_epoch=on_epoch)


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """torch's intra-op threads pinned for a user trial, as lrlab's trainer pins them for its own:
    without it every worker process runs one thread per core (measured: a 0.3 s own-loop trial
    took 5 s with 2 workers x 2 threads on 2 cores)."""
    if not threads:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _run_one(spec, trial_fn, user_fn, device, threads, tick: Callable[[int], Any] | None):
    if trial_fn is not None:
        return trial_fn(spec, device=device, threads=threads)
    if spec.trial is not None:
        from lrlab.lab.trial import run_user_trial

        with _torch_threads(threads):
            return run_user_trial(spec, on_epoch=tick, trial_fn=user_fn)
    on_epoch = None if tick is None else (lambda record: tick(record.epoch))
    return _default_trial(spec, device=device, threads=threads, on_epoch=on_epoch)


def _checked(result: Any) -> Any:
    """A trial's return value, if it is a result (else TypeError: the trial is failed)."""
    if not (callable(getattr(result, "metric_rows", None)) and hasattr(result, "diverged")):
        raise TypeError(
            f"the trial returned a {type(result).__name__}, not a TrialResult or MetricsResult"
        )
    return result


def execute_trial(trial_fn: TrialFn | None, spec: Any, device: str | None, threads: int | None):
    """Run one trial; return ``(result, None)`` or ``(None, one-line error)``. Runs in a worker.

    ``trial_fn`` defaults to the lab trainer, or the user's trial function when ``spec.trial``
    names one.
    """
    return execute_unit(trial_fn, [spec], device, threads)[0]


def _ticker(tick: EpochTick, key: str) -> Callable[[int], Any]:
    return lambda epoch: tick(key, epoch)


def execute_unit(
    trial_fn: TrialFn | None,
    specs: Sequence[TrialSpec],
    device: str | None,
    threads: int | None,
    tick: EpochTick | None = None,
    user_fn: Callable | None = None,
) -> list[tuple[Any, str | None]]:
    """Run a unit of work; one ``(result, None)`` or ``(None, one-line error)`` per spec.

    A :class:`Batch` goes to :func:`lrlab.lab.batched.train_trials` (one computation); if that
    raises, every trial of the unit fails with its error.
    """
    if isinstance(specs, Batch) and trial_fn is None:
        try:
            from lrlab.lab.batched import train_trials

            on_epoch = None if tick is None else (lambda spec, rec: tick(spec.key(), rec.epoch))
            results = train_trials(list(specs), device=device, threads=threads, on_epoch=on_epoch)
            return [(_checked(r), None) for r in results]
        except Exception as exc:  # a failing batch is recorded, never fatal to the sweep
            return [(None, one_line(exc))] * len(specs)
    out: list[tuple[Any, str | None]] = []
    for spec in specs:
        ticker = None if tick is None else _ticker(tick, spec.key())
        try:
            out.append((_checked(_run_one(spec, trial_fn, user_fn, device, threads, ticker)), None))
        except Exception as exc:  # a failing trial is recorded, never fatal to the sweep
            out.append((None, one_line(exc)))
    return out


# --------------------------------------------------------------------------------------------
# Executors


class InlineExecutor:
    """Runs trials one after another in this process (``workers=0``): handy for debugging.

    ``time_limit`` works in the main thread on POSIX (a ``SIGALRM`` timer fails the trial).
    ``user_fn`` is the user's trial function object (it need not be importable).
    """

    def __init__(
        self,
        *,
        trial_fn: TrialFn | None = None,
        device=None,
        threads: int | None = 1,
        user_fn: Callable | None = None,
    ):
        self.trial_fn, self.device, self.threads, self.user_fn = trial_fn, device, threads, user_fn

    def run(self, units, *, on_epoch=None, time_limit=None) -> Iterator[Outcome]:
        for unit in units:
            with _alarm(time_limit, len(unit)):
                results = execute_unit(
                    self.trial_fn, unit, self.device, self.threads, on_epoch, self.user_fn
                )
            for spec, (result, error) in zip(unit, results):
                yield Outcome(spec, result, error)

    def close(self) -> None:
        pass


class TimeLimitExceeded(Exception):
    """A trial ran past its time limit."""


class _alarm:
    """A ``SIGALRM`` timer that raises :class:`TimeLimitExceeded` in the trial (main thread)."""

    def __init__(self, limit: float | None, trials: int):
        usable = (
            hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        )
        self.seconds = limit * trials if limit and usable else None

    def _fire(self, signum, frame):
        raise TimeLimitExceeded(f"ran past its time limit of {self.seconds:g} s")

    def __enter__(self):
        if self.seconds:
            self.old = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        if self.seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)


def _watch_driver(driver_pid: int) -> None:
    """In a worker: exit as soon as the driver is gone, so that a SIGKILLed driver leaves no
    orphans training (the fork server then exits too, once its workers have)."""

    def watch():
        while process_alive(driver_pid):
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="lrlab-driver-watch", daemon=True).start()


def _worker_main(conn, driver_pid: int, trial_fn, device, threads) -> None:
    """A worker process: run each unit the driver sends, streaming epoch ticks, until told to
    stop (None) or the driver is gone."""
    _watch_driver(driver_pid)

    def tick(key: str, epoch: int) -> None:
        conn.send(("tick", key, epoch))

    while True:
        try:
            unit = conn.recv()
        except (EOFError, OSError):
            return
        if unit is None:
            return
        results = execute_unit(trial_fn, unit, device, threads, tick)
        try:
            conn.send(("done", results))
        except Exception as exc:  # a result that cannot be pickled
            conn.send(("done", [(None, one_line(exc))] * len(unit)))


#: Modules the fork server imports once, before it forks workers.
FORKSERVER_PRELOAD = (
    "lrlab.lab.sweep",
    "lrlab.lab.trainer",
    "lrlab.lab.tasks",
    "lrlab.lab.models",
    "lrlab.lab.batched",
    "lrlab.lab.batched_nets",
    "lrlab.lab.batched_optim",
)


@dataclass
class _Worker:
    process: Any
    conn: Any
    unit: list | None = None
    started: float = 0.0


class LocalExecutor:
    """A pool of ``workers`` reused worker processes, each running one unit at a time.

    Each worker runs its trials with ``threads`` torch threads and sends an epoch tick per
    finished epoch. A worker that dies (killed, out of memory) fails only the unit it held and
    is replaced; so is a worker whose unit runs past the time limit (it is killed).

    The start method is ``forkserver`` where the platform has it (a server process imports torch
    and the trainer once, then forks each worker from it: fast starts, no inherited threads),
    else ``spawn``. With ``forkserver``, workers see the environment of the moment the server
    started (the first pool of this process), not later changes to ``os.environ``.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        trial_fn: TrialFn | None = None,
        device=None,
        threads: int | None = 1,
        start_method: str | None = None,
    ):
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1 for the local executor, got {workers!r}")
        self.trial_fn, self.device, self.threads = trial_fn, device, threads
        if start_method is None:
            methods = multiprocessing.get_all_start_methods()
            start_method = "forkserver" if "forkserver" in methods else "spawn"
        self.context: Any = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self.context.set_forkserver_preload(list(FORKSERVER_PRELOAD))
        self._pool: list[_Worker] = []

    def _start_worker(self) -> _Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(
            target=_worker_main,
            args=(child, os.getpid(), self.trial_fn, self.device, self.threads),
            name="lrlab-worker",
            daemon=True,
        )
        try:
            process.start()
        except (AttributeError, TypeError, ValueError) as exc:  # pickling the trial function
            parent.close()
            child.close()
            raise ConfigError(
                f"trial_fn cannot be sent to worker processes ({one_line(exc)}): use a "
                "function defined at the top level of a module, or workers=0"
            ) from None
        child.close()
        worker = _Worker(process, parent)
        self._pool.append(worker)
        return worker

    def _stop_worker(self, worker: _Worker) -> None:
        if worker in self._pool:
            self._pool.remove(worker)
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()

    def _assign(self, unit: list) -> None:
        idle = [w for w in self._pool if w.unit is None]
        worker = idle[0] if idle else self._start_worker()
        worker.unit, worker.started = unit, time.monotonic()
        worker.conn.send(unit)

    def _receive(self, worker: _Worker, on_epoch: EpochTick | None) -> list[Outcome]:
        """Read one message of a busy worker; the outcomes it ends with (none for a tick)."""
        unit = worker.unit or []
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            code = worker.process.exitcode
            self._stop_worker(worker)
            error = f"WorkerDied: the worker process died (exit code {code})"
            return [Outcome(spec, None, error) for spec in unit]
        if message[0] == "tick":
            if on_epoch is not None:
                on_epoch(message[1], message[2])
            return []
        worker.unit = None
        return [Outcome(spec, r, e) for spec, (r, e) in zip(unit, message[1])]

    def _overdue(self, time_limit: float | None) -> list[Outcome]:
        if not time_limit:
            return []
        out = []
        now = time.monotonic()
        for worker in list(self._pool):
            unit = worker.unit
            if unit is not None and now - worker.started > time_limit * len(unit):
                error = f"TimeLimitExceeded: ran past its time limit of {time_limit:g} s"
                out += [Outcome(spec, None, error) for spec in unit]
                self._stop_worker(worker)
        return out

    def run(self, units, *, on_epoch=None, time_limit=None) -> Iterator[Outcome]:
        pending = iter(units)
        exhausted = False
        try:
            while True:
                while not exhausted and sum(w.unit is not None for w in self._pool) < self.workers:
                    unit = next(pending, None)
                    if unit is None:
                        exhausted = True
                    else:
                        self._assign(unit)
                busy = [w for w in self._pool if w.unit is not None]
                if not busy:
                    return
                ready = multiprocessing.connection.wait([w.conn for w in busy], timeout=0.5)
                for worker in [w for w in busy if w.conn in ready]:
                    yield from self._receive(worker, on_epoch)
                yield from self._overdue(time_limit)
        finally:
            for worker in [w for w in self._pool if w.unit is not None]:
                self._stop_worker(worker)  # interrupted: stop trials nobody will record

    def close(self) -> None:
        for worker in list(self._pool):
            if worker.unit is None:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
                worker.process.join(timeout=2)
            self._stop_worker(worker)


def _make_local(workers=None, **kwargs) -> Executor:
    if workers is not None and int(workers) == 0:
        return InlineExecutor(**kwargs)
    kwargs.pop("user_fn", None)
    return LocalExecutor(workers, **kwargs)


#: Executor factories by name: ``factory(workers=..., trial_fn=..., device=..., threads=...)``.
#: Another backend registers itself here (``EXECUTORS["ray"] = make_ray_executor``).
EXECUTORS: dict[str, Callable[..., Executor]] = {"local": _make_local}


def make_executor(name: str = "local", **kwargs) -> Executor:
    """Build the executor registered as ``name``; ``workers=0`` with "local" runs inline."""
    factory = EXECUTORS.get(name)
    if factory is None:
        raise unknown_name_error("executor", name, EXECUTORS)
    return factory(**kwargs)


# --------------------------------------------------------------------------------------------
# Progress


@dataclass
class SweepSummary:
    """What one :func:`run_sweep` call did."""

    study: str
    total: int  # distinct trials in the study (or in the cells asked for)
    skipped: int  # already finished in the store when the sweep started
    ran: int  # trials that came back in this call
    done: int
    diverged: int
    failed: int
    seconds: float
    by_others: int = 0  # finished meanwhile by another run on the same store


class _Progress:
    """A rich progress bar on a terminal, advanced by epochs inside running trials; one line
    per finished trial otherwise (logs, CI). Its rate (hence the time left) counts only work
    done in this run."""

    def __init__(self, console, title: str, total: int, epochs: int):
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)
        self.total, self.count, self.bar = total, 0, None
        self.epochs = max(1, int(epochs))
        self.ticked: dict[str, int] = {}
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[last]}"),
                console=self.console,
            )
            self.bar.start()
            self.task = self.bar.add_task(title, total=total, last="")

    def epoch(self, key: str, epoch: int) -> None:
        """A trial finished an epoch: advance by a fraction of a trial."""
        before = self.ticked.get(key, 0)
        now = min(int(epoch), self.epochs)
        if self.bar is not None and now > before:
            self.ticked[key] = now
            self.bar.update(self.task, advance=(now - before) / self.epochs)

    def advance(self, key: str, text: str) -> None:
        self.count += 1
        done_part = self.ticked.pop(key, 0) / self.epochs
        if self.bar is not None:
            self.bar.update(self.task, advance=1 - done_part, last=text)
        else:
            self.console.print(f"[{self.count}/{self.total}] {text}", highlight=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def record_outcome(store: Store, outcome: Outcome) -> TrialStatus:
    """Commit one trial's outcome to the store (one transaction); return its status (the
    store keeps a finished trial over a failure: see :meth:`Store.record_trial`)."""
    spec = outcome.spec
    key, spec_dict = spec.key(), spec.to_dict()
    result = outcome.result
    if result is None:
        store.record_trial(
            key, spec_dict, status=TrialStatus.FAILED, error=outcome.error or "unknown error"
        )
        return TrialStatus.FAILED
    status = TrialStatus.DIVERGED if result.diverged else TrialStatus.DONE
    store.record_trial(
        key,
        spec_dict,
        status=status,
        epochs=result.metric_rows(),
        final=result.final_metrics(),
        wall_time=result.wall_time,
    )
    return status


def _outcome_text(name: str, status: TrialStatus, outcome: Outcome, objective: str) -> str:
    text = f"{name}: {status.value}"
    if status == TrialStatus.DONE:
        final = outcome.result.final_metrics()
        value = final.get(objective)
        if value is None:
            rows = [r for r in outcome.result.metric_rows() if objective in r]
            value = rows[-1][objective] if rows else None
        if value is not None:
            text += f", {objective} {value:.4g}"
    elif status == TrialStatus.FAILED:
        text += f" ({outcome.error})"
    return text


# --------------------------------------------------------------------------------------------
# The sweep


class _Heartbeat:
    """Keeps this run's claims alive: a thread with its own connection extends them every
    ``lease / 3`` seconds until stopped."""

    def __init__(self, path: str, owner: str, lease: float):
        self.path, self.owner, self.lease = path, owner, lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lrlab-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        with Store(self.path) as store:
            while not self._stop.wait(self.lease / 3):
                with contextlib.suppress(LrlabError):  # a busy database: the next beat will do
                    store.heartbeat(self.owner, self.lease)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _units(cells: list, batch_trials: int, workers: int) -> list[list]:
    """The cells grouped into units of work: single cells, or batches of up to ``batch_trials``
    cells that can train as one computation, spread so every worker gets one
    (:func:`lrlab.lab.batched.plan_batches`)."""
    if batch_trials <= 1:
        return [[c] for c in cells]
    from lrlab.lab.batched import plan_batches

    by_spec = {id(c.spec): c for c in cells}
    batches = plan_batches([c.spec for c in cells], batch_trials, workers)
    return [Batch(by_spec[id(spec)] for spec in batch) for batch in batches]


def batch_trials_for(study, *, device: str | None, workers: int, custom_trainer: bool) -> int:
    """The default K: 1 for a user's trial function or trainer, else as many trials of the
    study's model as memory and cores allow (:func:`lrlab.lab.batched.choose_batch_trials`;
    1 for a model that does not batch)."""
    if custom_trainer or study.trial is not None:
        return 1
    from lrlab.lab.batched import batchable, choose_batch_trials

    if not batchable(study.model):
        return 1
    return choose_batch_trials(study.model, study.task, device, max(1, workers))


@dataclass
class _Run:
    """The state of one :func:`run_sweep` call."""

    store: Store
    owner: str
    lease: float
    attempted: set[str] = field(default_factory=set)
    counts: dict[TrialStatus, int] = field(default_factory=lambda: dict.fromkeys(TrialStatus, 0))

    def claimed_units(self, units: list[list]) -> Iterator[list[TrialSpec]]:
        """Each unit with the cells this run could claim (skipping finished or others' ones)."""
        for unit in units:
            specs = Batch() if isinstance(unit, Batch) else []
            for cell in unit:
                if cell.key not in self.attempted and self.store.claim(
                    cell.key, self.owner, self.lease
                ):
                    self.attempted.add(cell.key)
                    specs.append(cell.spec)
            if specs:
                yield specs


def _select(study, cells: Iterable[tuple[str, int]] | None):
    """``(study, selected cells)``: a study extended with the seeds ``cells`` ask for beyond its
    own (a seeds-until-decided loop adds seeds), and those cells of it."""
    if cells is None:
        return study, list(study.cells)
    wanted = {(str(s), V.integer(k, "cells: seed", lo=0)) for s, k in cells}
    unknown = sorted(s for s, _ in wanted if s not in study.schedules)
    if unknown:
        raise ConfigError(f"cells: {unknown[0]!r} is not a schedule of study {study.name!r}")
    extra = sorted({k for _, k in wanted} - set(study.seeds))
    if extra:
        study = study.with_seeds((*study.seeds, *extra))
    return study, [c for c in study.cells if (c.schedule, c.seed) in wanted]


def run_sweep(
    study,
    store: Store,
    *,
    executor: Executor | None = None,
    workers: int | None = None,
    trial_fn: TrialFn | None = None,
    device: str | None = None,
    threads: int | None = 1,
    progress: bool = True,
    console=None,
    cells: Iterable[tuple[str, int]] | None = None,
    time_limit: float | None = None,
    batch_trials: int | None = None,
    lease: float | None = None,
    poll: float | None = None,
) -> SweepSummary:
    """Run every trial of ``study`` (or of its ``cells``, ``(schedule, seed)`` pairs) that the
    store has not finished; commit each as it returns. ``executor``: the local pool with
    ``workers`` processes by default (``0``: inline); ``trial_fn`` replaces the trainer (a
    module-level function for a pool); ``time_limit`` (default: the study's) fails a trial that
    runs longer; ``batch_trials`` is K (``None``: :func:`batch_trials_for`; ``1``: one by one).
    Cells that share a key are trained once; trials another run holds a claim on are waited for
    (every ``poll`` s) and taken over if it dies: the call returns when every selected trial is
    finished or was tried once by this run.
    """
    start = time.perf_counter()
    study, selected = _select(study, cells)
    store.save_study(
        study.name, study.to_dict(), [(c.schedule, c.seed, c.key) for c in study.cells]
    )
    unique = list({c.key: c for c in selected}.values())
    finished_before = store.finished_keys(c.key for c in unique)
    run = _Run(store, new_owner(), default_lease() if lease is None else float(lease))
    limit = study.time_limit if time_limit is None else time_limit
    names = {c.key: f"{c.schedule} seed {c.seed}" for c in selected}
    own_executor = executor is None
    if executor is None:
        executor = make_executor(
            "local", workers=workers, trial_fn=trial_fn, device=device, threads=threads
        )
    todo = [c for c in unique if c.key not in finished_before]
    batching = _batching(study, executor, batch_trials, trial_fn, device)
    counts = run.counts
    bar = _start_bar(progress, console, study, len(unique), len(todo))
    heartbeat = _Heartbeat(store.path, run.owner, run.lease)
    try:
        by_others = _sweep_rounds(run, executor, todo, batching, limit, bar, names, study, poll)
    finally:
        heartbeat.stop()
        store.release(run.owner)
        if bar is not None:
            bar.stop()
        if own_executor:
            executor.close()
    done, diverged, failed = (counts[s] for s in TrialStatus)
    seconds = time.perf_counter() - start
    total, skipped, ran = len(unique), len(finished_before), sum(counts.values())
    return SweepSummary(study.name, total, skipped, ran, done, diverged, failed, seconds, by_others)


def _batching(study, executor, batch_trials, trial_fn, device) -> tuple[int, int]:
    """``(K, workers)``: the batch size (given, or :func:`batch_trials_for`) and the workers
    the batches are spread over."""
    workers = max(1, getattr(executor, "workers", 1))
    if batch_trials is None:
        custom = trial_fn is not None or getattr(executor, "trial_fn", None) is not None
        batch_trials = batch_trials_for(
            study, device=device, workers=workers, custom_trainer=custom
        )
    return batch_trials, workers


def _start_bar(progress: bool, console, study, total: int, todo: int) -> _Progress | None:
    if not (progress and todo):
        return None
    before = total - todo
    title = f"{study.name} ({before} done before)" if before else study.name
    return _Progress(console, title, todo, study.epochs)


def _sweep_rounds(run: _Run, executor, todo, batching, limit, bar, names, study, poll) -> int:
    """Train what this run can claim; then wait for trials other runs hold until they finish
    them or their claims expire (and train those). Returns how many others finished."""
    poll = min(1.0, run.lease / 4) if poll is None else poll
    by_others: set[str] = set()
    while True:
        open_cells = [c for c in todo if c.key not in run.attempted and c.key not in by_others]
        finished = run.store.finished_keys(c.key for c in open_cells)
        for key in finished:
            by_others.add(key)
            if bar is not None:
                bar.advance(key, f"{names.get(key, key)}: finished by another run")
        open_cells = [c for c in open_cells if c.key not in finished]
        if not open_cells:
            return len(by_others)
        before = len(run.attempted)
        units = run.claimed_units(_units(open_cells, *batching))
        tick = None if bar is None else bar.epoch
        for outcome in executor.run(units, on_epoch=tick, time_limit=limit):
            status = record_outcome(run.store, outcome)
            run.counts[status] += 1
            if bar is not None:
                key = outcome.spec.key()
                bar.advance(
                    key, _outcome_text(names.get(key, "?"), status, outcome, study.objective)
                )
        if len(run.attempted) == before:  # nothing claimable: others hold the rest
            time.sleep(poll)


def cell_trainer(
    study, store: Store, **options: Any
) -> Callable[[list[tuple[str, int]]], SweepSummary]:
    """``train_cells(cells)``: train the given ``(schedule, seed)`` cells of ``study`` into
    ``store`` (:func:`run_sweep` with ``cells=``; ``options`` are its other keywords). What a
    seeds-until-decided loop calls to add seeds where a comparison is still undecided: seeds
    beyond the study's own are added to it (and to its membership in the store)."""

    grown = [study]  # the study with every seed asked for so far: each call keeps the earlier ones

    def train_cells(cells: list[tuple[str, int]]) -> SweepSummary:
        cells = list(cells)
        extra = sorted({V.integer(k, "cells: seed", lo=0) for _, k in cells} - set(grown[0].seeds))
        if extra:
            grown[0] = grown[0].with_seeds((*grown[0].seeds, *extra))
        return run_sweep(grown[0], store, cells=cells, **options)

    return train_cells
