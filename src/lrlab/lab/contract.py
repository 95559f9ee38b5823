"""The lab's data contract: what a trial is, what it reports, and what the store gives back.

Torch-free (importing it imports neither torch nor numpy), so that study loading, the store, the
statistics and the report are typed against these classes without the trainer.

- :class:`TrialSpec`: everything that determines one training run (its :meth:`TrialSpec.key` is
  the store's identity of the run);
- :class:`EpochRecord` / :class:`TrialResult`: what lrlab's own trainer returns;
  :class:`MetricsResult`: what a user's trial function produces (any metric names);
- :class:`TrialStatus`, :data:`FINISHED`: the terminal states of a trial (optuna's ``TrialState``
  style);
- :class:`Objective`: the metric a study is judged on and its direction;
- :class:`StoredTrial`: one ``(schedule, seed)`` cell as read back from the store.

Both result classes offer ``metric_rows()`` (one ``{"epoch": e, name: value, ...}`` per epoch)
and ``final_metrics()``: that is all the store needs from a result, so a new result type (a
batched trainer's) only has to provide those two methods.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lrlab import validate as V
from lrlab.errors import ConfigError, unknown_name_error

#: Part of every :meth:`TrialSpec.key`. Bump it when a change to the trainer changes the numbers a
#: spec produces, so that stored results of the old trainer are not mistaken for new ones.
TRAINER_VERSION = 2
#: When the learning rate advances: every optimizer iteration, or once per epoch.
LR_INTERVALS = ("step", "epoch")
#: A reference to user code in a study file: ``"package.module:attribute"``.
CODE_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_code_ref(name: Any) -> bool:
    """Whether ``name`` is a ``module:attribute`` reference (not a built-in task or model name).

    >>> is_code_ref("mypkg.data:load"), is_code_ref("mnist1d")
    (True, False)
    """
    return isinstance(name, str) and CODE_REF.match(name) is not None


# --------------------------------------------------------------------------------------------
# States and objectives


class TrialStatus(str, enum.Enum):
    """The terminal state of a trial. ``DONE`` and ``DIVERGED`` are results (never re-run);
    ``FAILED`` (the trial raised, or ran past its time limit) is retried by the next sweep."""

    DONE = "done"
    DIVERGED = "diverged"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


FINISHED = frozenset({TrialStatus.DONE, TrialStatus.DIVERGED})
#: Which outcome may replace which in the store: a higher rank is never replaced by a lower one
#: (a failed retry never deletes a done trial).
STATUS_RANK = {TrialStatus.FAILED: 0, TrialStatus.DIVERGED: 1, TrialStatus.DONE: 2}
MODES = ("min", "max")


@dataclass(frozen=True)
class Objective:
    """The metric a study is judged on, and whether lower (``"min"``) or higher is better.

    >>> Objective("val_loss", "min").better(0.2, 0.3)
    True
    """

    name: str
    mode: str

    def __post_init__(self) -> None:
        V.string(self.name, "objective")
        V.choice(self.mode, "mode", MODES)

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b``."""
        return a < b if self.mode == "min" else a > b

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "mode": self.mode}


#: The objective of lrlab's own trainer: the final test accuracy, higher is better.
DEFAULT_OBJECTIVE = Objective("test_acc", "max")


# --------------------------------------------------------------------------------------------
# Optimizers (validated here, built by the trainer)

#: Allowed keys of each optimizer type and their defaults (torch's, except where noted).
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    "adamw": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False},
}
#: The optimizer of a study or a range test that names none (the only place it is written).
DEFAULT_OPTIMIZER: dict[str, Any] = {"type": "sgd", "momentum": 0.9, "weight_decay": 5e-4}


def default_optimizer() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_OPTIMIZER)


def _optimizer_value(key: str, value: Any) -> Any:
    where = f"optimizer.{key}"
    if key in ("nesterov", "amsgrad"):
        return V.boolean(value, where)
    if key == "momentum":
        return V.real(value, where, lo=0.0, hi=1.0, hi_open=True)
    if key == "betas":
        items = V.sequence(value, where, lambda b, w: V.real(b, w, lo=0.0, hi=1.0, hi_open=True))
        if len(items) != 2:
            raise ConfigError(f"{where} must be two numbers in [0, 1), got {V.describe(value)}")
        return list(items)
    return V.real(value, where, lo=0.0)


def normalize_optimizer(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an optimizer config and fill in every default.

    The result is explicit, so two configs that train identically have the same canonical JSON,
    hence the same trial key. ``lr`` is refused: the learning rate always comes from the schedule.

    >>> normalize_optimizer({"type": "sgd", "momentum": 0.9})["dampening"]
    0.0
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"optimizer must be a dict with a 'type' key, got {V.describe(config)}")
    kind = config.get("type")
    if not isinstance(kind, str) or kind not in OPTIMIZER_DEFAULTS:
        raise unknown_name_error("optimizer.type", str(kind), OPTIMIZER_DEFAULTS)
    allowed = OPTIMIZER_DEFAULTS[kind]
    if "lr" in config:
        raise ConfigError("optimizer.lr is not allowed: the learning rate comes from the schedule")
    for key in config:
        if key != "type" and key not in allowed:
            raise unknown_name_error(f"optimizer key for {kind!r}", key, allowed)
    out: dict[str, Any] = {"type": kind}
    for key, default in allowed.items():
        out[key] = _optimizer_value(key, config[key]) if key in config else copy.deepcopy(default)
    if kind == "sgd" and out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
        raise ConfigError("optimizer.nesterov needs momentum > 0 and dampening 0")
    return out


def hyperparam_keys(optimizer: Mapping[str, Any]) -> tuple[str, ...]:
    """The param-group keys a schedule may drive in a (normalised) optimizer: its numeric
    scalars, and ``momentum`` for an Adam-family one (its ``betas[0]``, as
    ``lrlab.torch.Scheduler`` sets it).

    >>> hyperparam_keys({"type": "adam"})
    ('momentum', 'eps', 'weight_decay')
    """
    defaults = OPTIMIZER_DEFAULTS[optimizer["type"]]
    scalars = tuple(k for k, v in defaults.items() if type(v) is float)
    return ("momentum", *scalars) if "betas" in defaults else scalars


def check_hyperparams(
    value: Any, where: str = "hyperparams", optimizer: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``{key: schedule config}`` with its shape checked (a table of config tables, no ``lr``:
    the learning rate is the schedule itself); with ``optimizer`` (normalised), every key is one
    it has (:func:`hyperparam_keys`). Schedule objects are stored as their configs."""
    out: dict[str, Any] = {}
    for key, config in V.mapping(value, where).items():
        at = V.field(where, V.string(key, f"{where} key"))
        if key == "lr":
            raise ConfigError(f"{at}: not allowed: the learning rate is the schedule itself")
        if optimizer is not None and key not in hyperparam_keys(optimizer):
            kind = f"hyper-parameter for {optimizer['type']!r}"
            raise ConfigError(
                f"{where}: {unknown_name_error(kind, key, hyperparam_keys(optimizer))}"
            )
        if hasattr(config, "to_config"):
            config = config.to_config()
        if not isinstance(config, Mapping) or "type" not in config:
            raise ConfigError(
                f"{at} must be a schedule config table with a 'type' key, got {V.describe(config)}"
            )
        out[key] = config
    return out


# --------------------------------------------------------------------------------------------
# The trial spec


def _json_copy(value: Any, where: str) -> Any:
    """A deep, JSON-normalised copy (tuples become lists): what is hashed is what is stored."""
    V.depth(value, where)
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"{where} must be plain JSON data (no NaN/inf): {exc}") from None


#: Fields left out of the key: where files and code live, and how the trial is named and judged,
#: do not change what is computed.
_UNKEYED = ("data_dir", "code_dir", "schedule_name", "objective")
#: Fields added after the key was defined: in the key only when set, so that the keys (hence the
#: stored results) of specs that do not use them stay what they were.
_KEYED_WHEN_SET = ("trial", "settings", "hyperparams")


def _check_builtin(task: str | None, model: str | None) -> None:
    """A built-in task and model are checked against each other (imports torch, lazily)."""
    if task is None or is_code_ref(task):
        return
    from lrlab.lab.models import check_model
    from lrlab.lab.tasks import task_info

    info = task_info(task)
    if model is not None and not is_code_ref(model):
        check_model(model, info)


@dataclass(frozen=True)
class TrialSpec:
    """Everything that determines one training run.

    ``schedule`` is a schedule or policy config dict for :func:`lrlab.from_config` (a
    :class:`~lrlab.schedules.Schedule` object is accepted and stored as its config). Its time
    unit is iterations when ``lr_interval == "step"`` and epochs when ``"epoch"``.

    lrlab's trainer trains ``model`` on ``task`` (built-in names, or ``module:attribute``
    references to user code). With ``trial`` (a ``module:attribute`` reference to a user's trial
    function) the user's function trains instead and ``task``/``model`` are not used;
    ``settings`` is the study's free-form ``[settings]`` table it reads. ``code_dir`` is the
    folder user code is imported from (besides ``sys.path``), ``schedule_name`` the study's name
    for the schedule, ``objective`` the metric the study judges by; none of the three enters the
    key. ``hyperparams`` maps other param-group keys (``momentum``, ``weight_decay``, ...) to
    schedule or policy configs on the same time axis (:func:`check_hyperparams`; with lrlab's
    trainer, keys of ``optimizer`` only). The constructor validates every field, so a bad study
    fails before its first trial runs.
    """

    task: str | None
    model: str | None
    schedule: dict
    epochs: int
    batch_size: int
    seed: int
    optimizer: dict = field(default_factory=default_optimizer)
    lr_interval: str = "step"
    data_dir: str | None = None
    trial: str | None = None
    settings: dict = field(default_factory=dict)
    schedule_name: str | None = None
    code_dir: str | None = None
    objective: str | None = None
    hyperparams: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        schedule = self.schedule
        if hasattr(schedule, "to_config"):
            schedule = schedule.to_config()
        if not isinstance(schedule, Mapping) or "type" not in schedule:
            raise ConfigError(
                f"schedule must be a config dict with a 'type' key, got {V.describe(schedule)}"
            )
        _set = object.__setattr__
        if self.trial is None:
            V.string(self.task, "task")
            V.string(self.model, "model")
            _check_builtin(self.task, self.model)
        elif not is_code_ref(self.trial):
            raise ConfigError(f"trial must be 'module:function', got {V.describe(self.trial)}")
        _set(self, "schedule", _json_copy(dict(schedule), "schedule"))
        _set(self, "settings", _json_copy(dict(V.mapping(self.settings, "settings")), "settings"))
        _set(self, "epochs", V.integer(self.epochs, "epochs", lo=1))
        _set(self, "batch_size", V.integer(self.batch_size, "batch_size", lo=1))
        _set(self, "seed", V.integer(self.seed, "seed", lo=0, hi=2**63 - 1))
        _set(self, "optimizer", normalize_optimizer(self.optimizer))
        own_optimizer = self.optimizer if self.trial is None else None  # a user trial has its own
        hyperparams = check_hyperparams(self.hyperparams, "hyperparams", own_optimizer)
        _set(self, "hyperparams", _json_copy(hyperparams, "hyperparams"))
        V.choice(self.lr_interval, "lr_interval", LR_INTERVALS)
        for name in ("data_dir", "code_dir"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, str | Path):
                    raise ConfigError(f"{name} must be a path or null, got {V.describe(value)}")
                _set(self, name, str(value))

    def __hash__(self) -> int:  # the dict fields are unhashable; the key identifies the trial
        return hash(self.key())

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict of every field (defaults included)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialSpec:
        """The inverse of :meth:`to_dict`; unknown or missing keys are a ConfigError."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"a trial spec must be a dict, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        for key in d:
            if key not in names:
                raise unknown_name_error("trial spec key", key, names)
        required = [
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        ]
        missing = [k for k in required if k not in d]
        if missing:
            raise ConfigError(
                f"trial spec: missing required key(s) {', '.join(map(repr, missing))}"
            )
        return cls(**dict(d))

    def canonical_json(self) -> str:
        """The JSON the key hashes: sorted keys, no spaces, without the unkeyed fields, plus
        :data:`TRAINER_VERSION`."""
        d = self.to_dict()
        for name in _UNKEYED:
            d.pop(name)
        for name in _KEYED_WHEN_SET:
            if not d[name]:
                d.pop(name)
        d["trainer_version"] = TRAINER_VERSION
        return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def key(self) -> str:
        """A stable 16-hex-digit id of this trial (SHA-256 of :meth:`canonical_json`)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class EpochRecord:
    """One epoch of lrlab's trainer. ``epoch`` counts from 1.

    ``train_loss`` / ``train_acc`` average the epoch's mini-batches (while the model changes, in
    train mode); ``val_*`` / ``test_*`` are one evaluation after the epoch (eval mode).
    Accuracies are fractions in [0, 1]. ``lr`` is the mean of the learning rates the optimizer
    actually used at the epoch's steps, ``lr_min`` / ``lr_max`` their range. ``seconds`` is the
    epoch's training plus evaluation time. Every field is stored as a metric of that name.
    """

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    lr: float
    lr_min: float
    lr_max: float
    seconds: float


#: The per-epoch metrics of lrlab's trainer (every :class:`EpochRecord` field but ``epoch``).
EPOCH_METRICS = tuple(f.name for f in fields(EpochRecord) if f.name != "epoch")


@dataclass
class TrialResult:
    """The outcome of :func:`lrlab.lab.trainer.train_trial`.

    ``best_epoch`` is the epoch (from 1) with the lowest finite validation loss and
    ``best_test_acc`` the test accuracy there; when no epoch had a finite validation loss they
    are 0, ``inf`` and ``nan``. ``final_test_acc`` is the last epoch's (also of a diverged trial).
    ``best_state`` (the best epoch's weights, on the CPU) is only filled when
    ``train_trial(..., keep_best_state=True)``; it is left out of :meth:`to_dict`.
    """

    spec: TrialSpec
    epochs: list[EpochRecord]
    diverged: bool
    best_epoch: int
    best_val_loss: float
    best_test_acc: float
    final_test_acc: float
    wall_time: float
    best_state: Any = field(default=None, repr=False, compare=False)

    def metric_rows(self) -> list[dict[str, float]]:
        """One ``{"epoch": e, metric: value, ...}`` per epoch (what the store keeps)."""
        return [asdict(e) for e in self.epochs]

    def final_metrics(self) -> dict[str, float]:
        """``test_acc`` (final epoch), ``best_test_acc``, ``best_epoch``, ``best_val_loss``."""
        return {
            "test_acc": self.final_test_acc,
            "best_test_acc": self.best_test_acc,
            "best_epoch": float(self.best_epoch),
            "best_val_loss": self.best_val_loss,
        }

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (spec as its dict, epochs as dicts, no weights)."""
        return {
            "spec": self.spec.to_dict(),
            "epochs": self.metric_rows(),
            "diverged": self.diverged,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "best_test_acc": self.best_test_acc,
            "final_test_acc": self.final_test_acc,
            "wall_time": self.wall_time,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialResult:
        d = dict(d)
        d["spec"] = TrialSpec.from_dict(d["spec"])
        d["epochs"] = [EpochRecord(**e) for e in d["epochs"]]
        return cls(**d)


@dataclass
class MetricsResult:
    """What a user's trial function produced: every ``trial.report`` and its returned dict.

    ``epochs`` holds one ``{"epoch": e, name: value, ...}`` per reported epoch, in the order
    reported; ``final`` the returned metrics; ``diverged`` is set when a reported value was NaN or
    infinite (the trial was ended there).
    """

    spec: TrialSpec
    epochs: list[dict[str, float]]
    final: dict[str, float]
    diverged: bool
    wall_time: float

    def metric_rows(self) -> list[dict[str, float]]:
        return [dict(row) for row in self.epochs]

    def final_metrics(self) -> dict[str, float]:
        return dict(self.final)


# --------------------------------------------------------------------------------------------
# What the store gives back


@dataclass(frozen=True)
class StoredTrial:
    """One ``(schedule, seed)`` cell of a study as read back from the store.

    ``epochs`` are the epoch numbers reported (from 1, ascending); ``metrics[name]`` is aligned
    with them (NaN where a metric was not reported that epoch); ``final`` the final metrics.
    """

    schedule: str
    seed: int
    key: str
    spec: dict
    status: TrialStatus
    error: str | None
    wall_time: float | None
    epochs: list[int]
    metrics: dict[str, list[float]]
    final: dict[str, float]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def value(self, objective: Objective) -> float:
        """``final[name]`` if present, else the last finite ``metrics[name]`` value, else NaN."""
        if objective.name in self.final:
            return self.final[objective.name]
        for v in reversed(self.metrics.get(objective.name, [])):
            if math.isfinite(v):
                return v
        return math.nan
