"""The user's side of the lab: a ``Trial`` handed to the user's own training function.

A study file may name user code, and only through these explicit ``module:attribute`` fields:
``trial = "mypkg.train:train"`` (the user's function trains), or ``task = "mypkg.data:load"`` and
``model = "mypkg.nets:Net"`` (lrlab's trainer trains the user's model on the user's data). A
schedule config never executes code. Modules are imported from ``sys.path`` plus the study
file's folder (searched after sys.path), in the driver when the study is loaded (so a
missing module, attribute or a wrong signature is one line before anything trains) and again in
each worker process.

The user's function::

    def train(trial):
        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)  # lr comes from lrlab
        sched = trial.scheduler(opt)
        for epoch in range(1, trial.settings["epochs"] + 1):
            ...                                   # train; sched.step() after each opt.step()
            trial.report(epoch, val_loss=v, val_acc=a)
        return {"test_acc": t}                    # optional final metrics

``trial.report`` with a NaN or infinite value records the epoch, marks the trial diverged and
ends it (it raises an exception the runner catches: let it propagate); a value that is not a
number fails the trial with a message naming the metric.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import numbers
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lrlab import validate as V
from lrlab.errors import ConfigError, LrlabError, did_you_mean, one_line
from lrlab.lab.contract import MetricsResult, TrialSpec, is_code_ref

__all__ = ["Trial", "TrialError", "check_signature", "import_ref", "run_user_trial"]


class TrialError(LrlabError):
    """A trial function misused its trial (a non-number metric, a bad return value, ...)."""


class _Diverged(Exception):
    """Raised by :meth:`Trial.report` on a non-finite value; the runner catches it. An
    ``Exception`` (like optuna's ``TrialPruned``), so that frameworks that clean up on an
    exception (Lightning, the HF Trainer) do so, then let it through."""


# --------------------------------------------------------------------------------------------
# Importing user code


def add_code_dir(code_dir: str | None) -> None:
    """Put ``code_dir`` last on ``sys.path`` (and leave it there: user modules import lazily).
    Last, so that a copy of the folder already on the path (Ray's ``working_dir``) wins."""
    if code_dir and code_dir not in sys.path:
        sys.path.append(code_dir)


def import_ref(ref: Any, where: str, code_dir: str | None = None) -> Any:
    """The object ``module:attribute`` names (the attribute may be dotted: ``mod:Class.make``).

    Every failure is a one-line :class:`ConfigError` naming the study field ``where``.
    """
    if not is_code_ref(ref):
        raise ConfigError(
            f"{where} must be 'module:attribute', e.g. 'mypkg.train:train', got {V.describe(ref)}"
        )
    module_name, attr = ref.split(":")
    add_code_dir(code_dir)
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        searched = f" (searched sys.path and {code_dir})" if code_dir else ""
        raise ConfigError(f"{where}: cannot import {module_name!r}: {exc}{searched}") from None
    except Exception as exc:  # the user's module itself raised while importing
        raise ConfigError(f"{where}: importing {module_name!r} raised {one_line(exc)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise ConfigError(
                f"{where}: {module_name!r} has no attribute {part!r}{did_you_mean(part, names)}"
            )
        obj = getattr(obj, part)
    return obj


def check_signature(obj: Any, where: str, ref: str, what: str, nargs: int = 1) -> None:
    """``obj`` is callable with ``nargs`` positional arguments, else a one-line ConfigError."""
    if not callable(obj):
        raise ConfigError(f"{where}: {ref} is not callable (it is a {type(obj).__name__})")
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins have no signature: let the call decide
        return
    try:
        signature.bind(*([None] * nargs))
    except TypeError:
        wanted = f"{what} as its only required argument" if nargs else "no required argument"
        raise ConfigError(f"{where}: {ref}{signature} must take {wanted}") from None


def load_user_callable(
    ref: str, where: str, code_dir: str | None, what: str, nargs: int = 1
) -> Callable:
    """The callable ``ref`` names, checked to take ``nargs`` positional arguments."""
    obj = import_ref(ref, where, code_dir)
    check_signature(obj, where, ref, what, nargs)
    return obj


# --------------------------------------------------------------------------------------------
# The trial object


def _number(value: Any, name: str) -> float:
    """A reported value as a float: Python and numpy numbers, one-element tensors and arrays."""
    if isinstance(value, (bool, str | bytes)):
        raise TrialError(f"trial.report: metric {name!r} must be a number, got {V.describe(value)}")
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            out = item()
        except (TypeError, ValueError, RuntimeError):  # not a one-element tensor or array
            out = None
        if isinstance(out, numbers.Real) and not isinstance(out, bool):
            return float(out)
    raise TrialError(f"trial.report: metric {name!r} must be a number, got {V.describe(value)}")


class Trial:
    """What the user's trial function receives. See the module docstring.

    Attributes:
        seed: the trial's seed (seed your model, data order, ... with it).
        schedule_name: the schedule's name in the study.
        schedule: the schedule or policy (placeholders resolved).
        hyperparams: the schedule's hyper-parameter schedules, ``{key: schedule}`` (may be
            empty); :meth:`scheduler` drives them.
        settings: the study's ``[settings]`` table, placeholders resolved (a copy).
    """

    def __init__(self, spec: TrialSpec, on_epoch: Callable[[int], Any] | None = None):
        from lrlab import from_config

        self.spec = spec
        self.seed = spec.seed
        self.schedule_name = spec.schedule_name or ""
        self.settings = dict(spec.settings)
        self.schedule = from_config(spec.schedule)
        self.hyperparams = {k: from_config(c) for k, c in spec.hyperparams.items()}
        self._on_epoch = on_epoch
        self.rows: list[dict[str, float]] = []
        self.diverged = False

    def __repr__(self) -> str:
        return f"Trial(schedule_name={self.schedule_name!r}, seed={self.seed})"

    def scheduler(self, optimizer, **kwargs):
        """A ready :class:`lrlab.torch.Scheduler` on this trial's schedule (it sets the
        optimizer's learning rate now; call ``step()`` after each ``optimizer.step()``).

        It also drives the schedule's ``hyperparams`` (the study's
        ``[schedules.NAME.hyperparams.KEY]`` tables, e.g. ``momentum``), checked against
        ``optimizer`` here; ``hyperparams=`` in ``kwargs`` adds other keys."""
        from lrlab import from_config
        from lrlab.torch import Scheduler

        extra = dict(V.mapping(kwargs.pop("hyperparams", None) or {}, "hyperparams"))
        both = sorted(set(extra) & set(self.hyperparams))
        if both:
            raise ConfigError(
                f"trial.scheduler: hyperparams {both[0]!r} is already driven by the study's "
                f"schedule {self.schedule_name!r}"
            )
        hyperparams = {**self.hyperparams, **extra}
        return Scheduler(
            optimizer, from_config(self.spec.schedule), hyperparams=hyperparams or None, **kwargs
        )

    def report(self, epoch: int, **metrics: Any) -> None:
        """Record one epoch's metrics (finite numbers under any names).

        Reporting an epoch again adds to (or overwrites) its metrics; epochs must not decrease.
        A NaN or infinite value marks the trial diverged and ends it.
        """
        epoch = V.integer(epoch, "trial.report: epoch", lo=1)
        values = {name: _number(v, name) for name, v in metrics.items()}
        if self.rows and epoch < self.rows[-1]["epoch"]:
            raise TrialError(
                f"trial.report: epoch {epoch} after epoch {int(self.rows[-1]['epoch'])}: "
                "epochs must not decrease"
            )
        if self.rows and epoch == self.rows[-1]["epoch"]:
            self.rows[-1].update(values)
        else:
            self.rows.append({"epoch": float(epoch), **values})
            if self._on_epoch is not None:
                self._on_epoch(epoch)
        if self.diverged or not all(math.isfinite(v) for v in values.values()):
            self.diverged = True
            raise _Diverged(f"epoch {epoch}: a non-finite metric")

    def reported(self) -> set[str]:
        return {name for row in self.rows for name in row if name != "epoch"}


def _final_metrics(returned: Any) -> dict[str, float]:
    if returned is None:
        return {}
    if not isinstance(returned, Mapping):
        raise TrialError(
            "the trial function must return a dict of final metrics or None, "
            f"got {type(returned).__name__}"
        )
    return {str(name): _number(v, str(name)) for name, v in returned.items()}


def run_user_trial(
    spec: TrialSpec,
    *,
    on_epoch: Callable[[int], Any] | None = None,
    trial_fn: Callable | None = None,
) -> MetricsResult:
    """Run the user's trial function of ``spec`` (imported from ``spec.trial``, or ``trial_fn``
    when given: the inline executor's shortcut) and collect what it reported."""
    started = time.perf_counter()
    if trial_fn is None:
        trial_fn = load_user_callable(spec.trial or "", "trial", spec.code_dir, "the trial")
    trial = Trial(spec, on_epoch)
    returned = None
    with contextlib.suppress(_Diverged):
        returned = trial_fn(trial)
    if trial.diverged:  # also when the user's code swallowed the exception
        return MetricsResult(spec, trial.rows, {}, True, time.perf_counter() - started)
    final = _final_metrics(returned)
    diverged = not all(math.isfinite(v) for v in final.values())
    objective = spec.objective
    if objective and not diverged and objective not in final and objective not in trial.reported():
        shown = ", ".join(sorted(trial.reported() | set(final))) or "nothing"
        raise TrialError(
            f"objective {objective!r} was never reported (reported: {shown}); "
            "report it with trial.report(epoch, ...) or return it, or set objective in the study"
        )
    return MetricsResult(spec, trial.rows, final, diverged, time.perf_counter() - started)


def user_code_path(path: str | Path) -> str:
    """The folder user code of a study file at ``path`` is imported from."""
    return str(Path(path).resolve().parent)
