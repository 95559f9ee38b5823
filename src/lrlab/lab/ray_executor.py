"""Run a sweep's trials on Ray: a local Ray instance by default, or an existing cluster.

Only *where* trials run changes. The driver (:func:`lrlab.lab.sweep.run_sweep`) still owns the
SQLite store: it skips finished trials, logs each trial as it is handed out, and commits every
result that comes back in one transaction, so resuming works exactly as with local processes.
This executor pulls units of work lazily (at most ``workers`` in flight), runs each one as a Ray
task (:func:`lrlab.lab.sweep.execute_unit`, the same function the local pool runs), and yields
the outcomes in completion order. A task that Ray loses (a worker or node that dies) becomes a
failed outcome, which the next sweep retries; a task past the time limit is cancelled and failed.
There are no epoch ticks from Ray tasks: the progress bar advances per finished trial.

User code (``trial = ...``, ``task``/``model = "module:attribute"``) reaches the workers through
Ray's runtime environment: when this executor starts Ray (a local instance or ``ray.init``
with an address), the study's folder is the job's ``working_dir`` (results and caches excluded:
:data:`SHIPPING_EXCLUDES`), which Ray copies to every node and puts on the workers' path. Ray
ships folders only when the job starts, so if Ray was already initialised by someone else, the
workers import user code from the study folder's absolute path (which works on one machine).

``ray`` is imported on first use; ``pip install 'lrlab[integrations]'`` installs it. On a cluster,
every node needs lrlab (and the dataset files a study reads) installed at the same paths.

Example::

    lrlab compare clr --executor ray                               # a local Ray instance
    lrlab compare clr --executor ray --ray-address ray://head:10001  # an existing cluster
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from lrlab.errors import ConfigError, LrlabError, one_line
from lrlab.lab.contract import is_code_ref
from lrlab.lab.sweep import (
    EXECUTORS,
    Outcome,
    TrialFn,
    default_workers,
    execute_unit,
)

__all__ = ["RayExecutor", "make_ray_executor"]

#: What is not shipped with a study folder (results, reports, caches).
SHIPPING_EXCLUDES = (
    "*.sqlite",
    "*.sqlite-wal",
    "*.sqlite-shm",
    "lrlab-out/",
    "__pycache__/",
    ".git/",
)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise LrlabError(
            "the ray executor needs Ray: pip install 'lrlab[integrations]' (or pip install ray)"
        ) from None
    return ray


def _runtime_env(spec: Any) -> dict | None:
    """The study folder as the job's ``working_dir`` when the trial runs user code."""
    if spec is None or not spec.code_dir:
        return None
    if spec.trial is None and not is_code_ref(spec.task) and not is_code_ref(spec.model):
        return None
    return {"working_dir": spec.code_dir, "excludes": list(SHIPPING_EXCLUDES)}


def _check_client(address: str) -> None:
    """A ``ray://`` address needs Ray Client (grpcio): say so in one line, not a traceback."""
    if not address.startswith("ray://"):
        return
    try:
        import grpc  # noqa: F401  (what ray.util.client needs)
    except ImportError:
        raise LrlabError(
            f"--ray-address {address}: Ray Client needs grpcio: pip install 'ray[client]' "
            "(lrlab's integrations extra installs it)"
        ) from None


class RayExecutor:
    """Trials as Ray tasks. See the module docstring.

    Args:
        workers: trials in flight at once. Default: :func:`~lrlab.lab.sweep.default_workers` on a
            local instance, else the cluster's CPUs divided by ``threads``.
        trial_fn: the function a task runs (default: the lab trainer); Ray pickles it with
            cloudpickle, so it need not be importable by the workers.
        device: passed to the trial; ``"cuda..."`` also reserves ``num_gpus`` (default 1) per task.
        threads: torch threads per trial, and the CPUs Ray reserves for each task.
        address: an existing cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``);
            ``None`` connects to an already initialised Ray, or else starts a local instance.
        num_cpus: CPUs of the local instance (default ``workers * threads``); ignored with ``address``.
        num_gpus: GPUs per trial (default 1 for a CUDA ``device``, else 0).
        max_retries: how often Ray re-runs a trial whose worker died (default 0: it is recorded as
            failed, and retried by the next sweep, like the local pool).
        init_kwargs: more keyword arguments for ``ray.init``.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        trial_fn: TrialFn | None = None,
        device: str | None = None,
        threads: int | None = 1,
        address: str | None = None,
        num_cpus: int | None = None,
        num_gpus: float | None = None,
        max_retries: int = 0,
        init_kwargs: dict[str, Any] | None = None,
    ):
        if workers is not None and int(workers) < 1:
            raise ConfigError(f"workers must be >= 1 for the ray executor, got {workers!r}")
        if threads is not None and int(threads) < 1:
            raise ConfigError(f"threads must be >= 1, got {threads!r}")
        self.workers = None if workers is None else int(workers)
        self.trial_fn, self.device, self.threads = trial_fn, device, threads
        self.address, self.num_cpus = address, num_cpus
        if num_gpus is None:
            num_gpus = 1 if str(device or "").startswith("cuda") else 0
        self.num_gpus, self.max_retries = num_gpus, int(max_retries)
        self.init_kwargs = dict(init_kwargs or {})
        self._started_ray = False
        self._remote: Any = None
        self._base: Any = None
        self._options: dict[str, Any] = {}
        self._in_flight: dict[Any, Any] = {}  # ObjectRef -> (unit, started)

    # ------------------------------------------------------------------ Ray set-up
    def _connect(self, first: Any = None):
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,  # keep the driver's progress bar readable
                "logging_level": logging.WARNING,
            }
            if self.address is not None:
                _check_client(self.address)
                kwargs["address"] = self.address
            else:
                cpus = self.num_cpus
                if cpus is None:
                    cpus = (self.workers or default_workers()) * (self.threads or 1)
                kwargs["num_cpus"] = int(cpus)
            env = _runtime_env(first)
            if env is not None:
                kwargs["runtime_env"] = env
            kwargs.update(self.init_kwargs)
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise LrlabError(
                    f"ray: cannot connect to {self.address!r}: {one_line(exc)}"
                ) from None
            self._started_ray = True
        if self.workers is None:
            if self._started_ray and self.address is None:
                self.workers = default_workers()
            else:
                cpus = int(ray.cluster_resources().get("CPU", 1))
                self.workers = max(1, cpus // (self.threads or 1))
        if self._remote is None:
            self._options = {
                "num_cpus": self.threads or 1,
                "num_gpus": self.num_gpus,
                "max_retries": self.max_retries,
                "name": "lrlab-trial",
            }
            self._base = ray.remote(execute_unit)
            self._remote = self._base.options(**self._options)
        return ray

    # ------------------------------------------------------------------ the Executor protocol
    def run(self, units: Iterable[list], *, on_epoch=None, time_limit=None) -> Iterator[Outcome]:
        pending = iter(units)
        first = next(pending, None)
        if first is None:
            return
        ray = self._connect(first[0])
        in_flight = self._in_flight  # ref -> (unit, started)
        queue = [first]
        try:
            while True:
                while len(in_flight) < (self.workers or 1):
                    unit = queue.pop() if queue else next(pending, None)
                    if unit is None:
                        break
                    ref = self._remote.remote(self.trial_fn, unit, self.device, self.threads)
                    in_flight[ref] = (unit, time.monotonic())
                if not in_flight:
                    return
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                for ref in ready:
                    yield from self._collect(ray, ref)
                yield from self._overdue(ray, time_limit)
        finally:
            if in_flight:  # interrupted: stop the trials nobody will record
                self._cancel()

    def _collect(self, ray, ref) -> Iterator[Outcome]:
        unit, _ = self._in_flight.pop(ref)
        try:
            results = ray.get(ref)
        except Exception as exc:  # the task or its worker was lost, or cancelled
            results = [(None, one_line(exc))] * len(unit)
        for spec, (result, error) in zip(unit, results):
            yield Outcome(spec, result, error)

    def _overdue(self, ray, time_limit: float | None) -> Iterator[Outcome]:
        if not time_limit:
            return
        now = time.monotonic()
        for ref, (unit, started) in list(self._in_flight.items()):
            if now - started > time_limit * len(unit):
                del self._in_flight[ref]
                with contextlib.suppress(Exception):  # already finished, or Ray is gone
                    ray.cancel(ref, force=True)
                error = f"TimeLimitExceeded: ran past its time limit of {time_limit:g} s"
                for spec in unit:
                    yield Outcome(spec, None, error)

    def _cancel(self) -> None:
        if not self._in_flight:
            return
        ray = _import_ray()
        for ref in list(self._in_flight):
            with contextlib.suppress(Exception):  # already finished, or Ray is gone
                ray.cancel(ref, force=True)
        self._in_flight.clear()

    def close(self) -> None:
        """Cancel what is still running; shut down the local Ray instance if this executor started it."""
        self._cancel()
        if self._started_ray:
            ray = _import_ray()
            if ray.is_initialized():
                ray.shutdown()
            self._started_ray = False
        self._remote = None


def make_ray_executor(workers=None, *, address: str | None = None, **kwargs) -> RayExecutor:
    """The factory registered as ``EXECUTORS["ray"]`` (``lrlab compare --executor ray``)."""
    return RayExecutor(workers, address=address, **kwargs)


EXECUTORS.setdefault("ray", make_ray_executor)
