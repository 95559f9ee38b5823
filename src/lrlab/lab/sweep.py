"""The sweep runner: run a study's trials in parallel, commit each as it finishes, resume for free.

The driver process owns the results store. It skips every trial whose key is already finished
in the store, hands the rest to an :class:`Executor`, and writes each trial's rows in one
transaction as soon as its result comes back, so a sweep killed at any moment loses nothing that
was committed and the next run picks up where it stopped.

Executors are pluggable: anything with ``run(specs) -> iterator of Outcome`` and ``close()``
(the :class:`Executor` protocol) can be registered in :data:`EXECUTORS` under a name, which is
what ``lrlab compare --executor NAME`` looks up. Only the local process pool ships here; a Ray
executor only has to pull specs from the iterable as it has room and yield outcomes as they come.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from lrlab.errors import ConfigError, one_line, unknown_name_error
from lrlab.lab.store import Store

TrialFn = Callable[..., Any]  # (spec, *, device=None, threads=1) -> TrialResult


def default_workers() -> int:
    """One worker per CPU core, each with one torch thread: every core busy, no oversubscription."""
    return max(1, os.cpu_count() or 1)


def keep_in_flight(
    specs: Iterable[Any], limit: int, in_flight: dict, submit: Callable, wait_any: Callable
) -> Iterator[list]:
    """Submit ``specs`` keeping at most ``limit`` in flight; yield each batch of finished
    ``(spec, handle)`` pairs. ``in_flight`` (handle -> spec) is the caller's, so that it can
    cancel what is left, or drop it between batches when its backend broke."""
    pending = iter(specs)
    while True:
        for spec in itertools.islice(pending, max(0, limit - len(in_flight))):
            in_flight[submit(spec)] = spec
        if not in_flight:
            return
        yield [(in_flight.pop(handle), handle) for handle in wait_any(list(in_flight))]


@dataclass
class Outcome:
    """What an executor yields for one trial: a result, or the one-line error it raised."""

    spec: Any  # TrialSpec
    result: Any = None  # TrialResult | None
    error: str | None = None


@runtime_checkable
class Executor(Protocol):
    """Runs trials somewhere and yields their outcomes, in completion order.

    ``run`` must pull specs from ``specs`` lazily, only when it has room to start one (the driver
    logs each trial as started when it is pulled), and must turn a trial's exception into an
    :class:`Outcome` with ``error`` set rather than raise. ``close`` stops whatever is still running.
    """

    def run(self, specs: Iterable[Any]) -> Iterator[Outcome]: ...

    def close(self) -> None: ...


#: Tasks loaded by this process (a worker trains many trials on the same data).
_TASK_CACHE: dict[tuple, Any] = {}


def _default_trial(spec: Any, *, device=None, threads: int | None = 1):
    """:func:`lrlab.lab.trainer.train_trial` with the task loaded once per process."""
    from lrlab.lab.tasks import load_task
    from lrlab.lab.trainer import resolve_device, train_trial

    dev = resolve_device(device)
    key = (spec.task, spec.data_dir, str(dev))
    if key not in _TASK_CACHE:
        _TASK_CACHE.clear()  # one task at a time is enough, and keeps memory flat
        _TASK_CACHE[key] = load_task(spec.task, data_dir=spec.data_dir, device=dev)
    return train_trial(spec, device=dev, threads=threads, task=_TASK_CACHE[key])


def execute_trial(trial_fn: TrialFn | None, spec: Any, device: str | None, threads: int | None):
    """Run one trial; return ``(result, None)`` or ``(None, one-line error)``. Runs in a worker.

    ``trial_fn`` defaults to the lab trainer (:func:`lrlab.lab.trainer.train_trial`).
    """
    try:
        return (trial_fn or _default_trial)(spec, device=device, threads=threads), None
    except Exception as exc:  # a failing trial is recorded, never fatal to the sweep
        return None, one_line(exc)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): kill(pid, 0) is all we have
        return True


def _watch_driver(driver_pid: int) -> None:
    """Worker initializer: exit this worker as soon as the driver is gone, so that a SIGKILLed
    driver leaves no orphans training (the fork server then exits too, once its workers have)."""

    def watch():
        while _alive(driver_pid):
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="lrlab-driver-watch", daemon=True).start()


#: Modules the fork server imports once, before it forks workers.
FORKSERVER_PRELOAD = ("lrlab.lab.sweep", "lrlab.lab.trainer", "lrlab.lab.tasks", "lrlab.lab.models")


class InlineExecutor:
    """Runs trials one after another in this process (``workers=0``): handy for debugging."""

    def __init__(self, *, trial_fn: TrialFn | None = None, device=None, threads: int | None = 1):
        self.trial_fn, self.device, self.threads = trial_fn, device, threads

    def run(self, specs: Iterable[Any]) -> Iterator[Outcome]:
        for spec in specs:
            result, error = execute_trial(self.trial_fn, spec, self.device, self.threads)
            yield Outcome(spec, result, error)

    def close(self) -> None:
        pass


class LocalExecutor:
    """A pool of ``workers`` reused worker processes.

    At most ``workers`` trials are in flight; each worker runs its trials with ``threads`` torch
    threads. A worker that dies (killed, out of memory) fails the trials it may have held and the
    pool is started afresh.

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
        self.context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self.context.set_forkserver_preload(list(FORKSERVER_PRELOAD))
        self._pool: cf.ProcessPoolExecutor | None = None

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self.context,
            initializer=_watch_driver,
            initargs=(os.getpid(),),
        )

    def _submit(self, spec: Any) -> cf.Future:
        if self._pool is None:
            self._pool = self._new_pool()
        return self._pool.submit(execute_trial, self.trial_fn, spec, self.device, self.threads)

    def run(self, specs: Iterable[Any]) -> Iterator[Outcome]:
        in_flight: dict[cf.Future, Any] = {}

        def first_done(futures):
            return cf.wait(futures, return_when=cf.FIRST_COMPLETED)[0]

        try:
            for finished in keep_in_flight(
                specs, self.workers, in_flight, self._submit, first_done
            ):
                broken = False
                for spec, future in finished:
                    try:
                        result, error = future.result()
                    except cf.process.BrokenProcessPool:
                        broken = True
                        result, error = None, "BrokenProcessPool: a worker process died"
                    except Exception as exc:  # e.g. a result that could not be pickled
                        result, error = None, one_line(exc)
                    yield Outcome(spec, result, error)
                if broken:
                    for spec in in_flight.values():
                        yield Outcome(spec, None, "BrokenProcessPool: a worker process died")
                    in_flight.clear()
                    self.close()
        finally:
            if in_flight:  # interrupted: do not wait for trials nobody will record
                self.close()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)


def _make_local(workers=None, **kwargs) -> Executor:
    if workers is not None and int(workers) == 0:
        return InlineExecutor(**kwargs)
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


@dataclass
class SweepSummary:
    """What one :func:`run_sweep` call did."""

    study: str
    total: int  # distinct trials in the study
    skipped: int  # already finished in the store
    ran: int  # trials that came back in this call
    done: int
    diverged: int
    failed: int
    seconds: float


class _Progress:
    """A rich progress bar on a terminal; one line per finished trial otherwise (logs, CI)."""

    def __init__(self, console, title: str, total: int):
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)
        self.total, self.count, self.bar = total, 0, None
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

    def advance(self, text: str) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, last=text)
        else:
            self.console.print(f"[{self.count}/{self.total}] {text}", highlight=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def record_outcome(store: Store, outcome: Outcome) -> str:
    """Commit one trial's outcome to the store (one transaction); return its status."""
    from lrlab.policies import convergence_epoch

    spec = outcome.spec
    key, spec_dict = spec.key(), spec.to_dict()
    result = outcome.result
    if result is None:
        store.record_trial(key, spec_dict, status="failed", error=outcome.error or "unknown error")
        return "failed"
    epochs = [_epoch_dict(e) for e in result.epochs]
    val_acc = [e["val_acc"] for e in epochs]
    status = "diverged" if result.diverged else "done"
    store.record_trial(
        key,
        spec_dict,
        status=status,
        epochs=epochs,
        diverged=bool(result.diverged),
        best_epoch=result.best_epoch,
        best_val_loss=result.best_val_loss,
        best_test_acc=result.best_test_acc,
        final_test_acc=result.final_test_acc,
        convergence_epoch=convergence_epoch(val_acc) if val_acc else None,
        wall_time=result.wall_time,
    )
    return status


def _epoch_dict(record: Any) -> dict:
    if isinstance(record, dict):
        return record
    import dataclasses

    return dataclasses.asdict(record)


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
) -> SweepSummary:
    """Run every trial of ``study`` that ``store`` has not finished; commit each as it returns.

    ``executor`` defaults to the local process pool with ``workers`` processes (``None``: see
    :func:`default_workers`; ``0``: run inline). ``trial_fn`` defaults to
    :func:`lrlab.lab.trainer.train_trial`; it must be picklable (a module-level function) for a
    process pool. Cells of the study that share a spec (hence a key) are trained once.
    """
    start = time.perf_counter()
    cells = study.cells
    store.save_study(study.name, study.to_dict(), [(c.schedule, c.seed, c.key) for c in cells])
    finished = store.finished_keys()
    todo, seen = [], set()
    for cell in cells:
        if cell.key not in finished and cell.key not in seen:
            todo.append(cell)
            seen.add(cell.key)
    distinct = len({c.key for c in cells})
    names = {c.key: f"{c.schedule} seed {c.seed}" for c in cells}
    counts = {"done": 0, "diverged": 0, "failed": 0}

    def handed_out() -> Iterator[Any]:
        for cell in todo:
            store.record_attempt(cell.key)  # the execution log, before the trial can start
            yield cell.spec

    own_executor = executor is None
    if executor is None:
        executor = make_executor(
            "local", workers=workers, trial_fn=trial_fn, device=device, threads=threads
        )
    bar = None
    try:
        if progress and todo:
            done_before = distinct - len(todo)
            title = f"{study.name} ({done_before} done before)" if done_before else study.name
            bar = _Progress(console, title, len(todo))
        for outcome in executor.run(handed_out()):
            status = record_outcome(store, outcome)
            counts[status] += 1
            if bar is not None:
                text = f"{names.get(outcome.spec.key(), '?')}: {status}"
                if status == "done":
                    text += f", final test acc {outcome.result.final_test_acc:.3f}"
                elif status == "failed":
                    text += f" ({outcome.error})"
                bar.advance(text)
    finally:
        if bar is not None:
            bar.stop()
        if own_executor:
            executor.close()
    return SweepSummary(
        study=study.name,
        total=distinct,
        skipped=distinct - len(todo),
        ran=sum(counts.values()),
        done=counts["done"],
        diverged=counts["diverged"],
        failed=counts["failed"],
        seconds=time.perf_counter() - start,
    )
