"""Study files: a TOML description of one comparison (what trains, schedules, seeds, objective).

A study expands into one :class:`~lrlab.lab.contract.TrialSpec` per (schedule, seed) cell. It is
validated completely when it is loaded, every schedule included (each is built with
:func:`lrlab.from_config` for every seed), and user code it names is imported and its signature
checked, so a bad study fails before any training starts, with a one-line
:class:`~lrlab.errors.ConfigError` that names the field.

The file's fields are described once, in :data:`FIELDS` (name, meaning, checker, default); the
parser walks that table. What trains is either lrlab's trainer (``task`` and ``model``: built-in
names or ``module:attribute`` references to user code) or the user's own trial function
(``trial = "module:function"``, see :mod:`lrlab.lab.trial`), which reads the free-form
``[settings]`` table.

Placeholders keep a study readable whatever its length: a string value ``"${EXPR}"`` anywhere in
a schedule table (or in ``[settings]``) is replaced, per trial, by the value of ``EXPR``, an
arithmetic expression (numbers, ``+ - * / //``, parentheses) over the names of
:meth:`Study.variables`; the result is rounded to the nearest integer (placeholders are step
counts and seeds). For example ``milestones = ["${0.5*total_steps}", "${0.75*total_steps}"]``.
Nothing else is evaluated.

The full format is in ``docs/lab-compare.md``; the built-in studies are in ``lrlab/lab/studies``.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import operator
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

from lrlab import validate as V
from lrlab.errors import ConfigError, LrlabError, did_you_mean, one_line
from lrlab.lab.contract import (
    DEFAULT_OBJECTIVE,
    LR_INTERVALS,
    MODES,
    TrialSpec,
    check_hyperparams,
    default_optimizer,
    is_code_ref,
    normalize_optimizer,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The names a placeholder may use in a study trained by lrlab's trainer, and what they mean.
PLACEHOLDERS = {
    "epochs": "number of training epochs",
    "steps_per_epoch": "schedule steps per epoch: optimizer iterations per epoch when the LR is "
    'stepped per iteration (lr_interval = "step"), 1 when it is stepped per epoch',
    "total_steps": "epochs * steps_per_epoch: the horizon of a decaying schedule",
    "iterations_per_epoch": "optimizer iterations (mini-batches) per epoch, whatever lr_interval is",
    "total_iterations": "epochs * iterations_per_epoch",
    "seed": "the trial's seed (e.g. a different RALR draw per seed)",
}
#: The most seeds a study may have (each seed is one trial per schedule).
MAX_SEEDS = 10_000
#: seeds 0..N-1 of a study that does not say
DEFAULT_SEEDS = 5
#: The longest placeholder expression accepted (a guard against pathological inputs).
MAX_EXPRESSION = 500
#: Keys of a [schedules.NAME] table that are trial settings for that schedule, not schedule config.
SCHEDULE_OVERRIDES = ("optimizer", "lr_interval", "hyperparams")
#: Of those, the ones for lrlab's trainer only (hyperparams also drive a user trial's scheduler).
TRAINER_OVERRIDES = ("optimizer", "lr_interval")

_PLACEHOLDER = re.compile(r"^\$\{(.*)\}$", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


# --------------------------------------------------------------------------------------------
# Placeholders: a tiny arithmetic evaluator (ast-walked, no eval)

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def _walk(node: ast.AST, variables: Mapping[str, float], expr: str) -> float:
    if isinstance(node, ast.Expression):
        return _walk(node.body, variables, expr)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return cast(float, node.value)  # an int stays an int: exact arithmetic on step counts
    if isinstance(node, ast.Name):
        if node.id not in variables:
            raise ValueError(
                f"unknown name {node.id!r} in '${{{expr}}}'"
                f"{did_you_mean(node.id, variables)}; allowed: {', '.join(sorted(variables))}"
            )
        return variables[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _walk(node.left, variables, expr), _walk(node.right, variables, expr)
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand, variables, expr))
    raise ValueError(f"'${{{expr}}}' may only use numbers, names, + - * / // and parentheses")


def evaluate_placeholder(expr: str, variables: Mapping[str, float]) -> int:
    """The value of ``expr`` (numbers, the names in ``variables``, ``+ - * / //``, parentheses),
    rounded to the nearest integer (halves away from zero).

    >>> evaluate_placeholder("0.5*total_steps", {"total_steps": 391})
    196
    >>> evaluate_placeholder("(epochs - 1) // 2", {"epochs": 10})
    4
    """
    shown = expr if len(expr) <= 60 else expr[:57] + "..."
    if len(expr) > MAX_EXPRESSION:
        raise ValueError(f"'${{{shown}}}' is longer than {MAX_EXPRESSION} characters")
    try:
        value = _walk(ast.parse(expr.strip(), mode="eval"), variables, shown)
        rounded = math.copysign(math.floor(abs(value) + 0.5), value)
    except SyntaxError:
        raise ValueError(f"'${{{shown}}}' is not an arithmetic expression") from None
    except ZeroDivisionError:
        raise ValueError(f"'${{{shown}}}' divides by zero") from None
    except (OverflowError, RecursionError, MemoryError):
        raise ValueError(f"'${{{shown}}}' is too large or too deeply nested") from None
    if not math.isfinite(rounded) or abs(rounded) > V.MAX_INT:
        raise ValueError(f"'${{{shown}}}' is not finite or beyond 2**53")
    return int(rounded)


def resolve_placeholders(value: Any, variables: Mapping[str, float], where: str = "") -> Any:
    """``value`` with every ``"${EXPR}"`` string (at any depth) replaced by its integer value.

    Raises ``ConfigError`` naming the field (``where``) on a bad expression.
    """
    if isinstance(value, str):
        match = _PLACEHOLDER.match(value.strip())
        if match:
            try:
                return evaluate_placeholder(match.group(1), variables)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if "${" in value:
            raise ConfigError(
                f'{where}: a placeholder must be the whole string, like "${{total_steps}}", '
                f"got {V.describe(value)}"
            )
        return value
    if isinstance(value, Mapping):
        return {k: resolve_placeholders(v, variables, V.field(where, k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve_placeholders(v, variables, V.field(where, i)) for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------------------------
# Steps per epoch


@lru_cache(maxsize=16)
def _train_size(task: str, data_dir: str | None, code_dir: str | None = None) -> int:
    from lrlab.lab.tasks import load_any_task

    return len(load_any_task(task, data_dir=data_dir, code_dir=code_dir).y_train)


def iterations_per_epoch(
    task: str, batch_size: int, data_dir: str | None = None, code_dir: str | None = None
) -> int:
    """Optimizer iterations per epoch of ``task`` at ``batch_size``, as the trainer batches."""
    from lrlab.lab.trainer import iterations_per_epoch as batches

    return batches(_train_size(task, data_dir, code_dir), batch_size)


# --------------------------------------------------------------------------------------------
# The study value


@dataclass(frozen=True)
class ScheduleEntry:
    """One ``[schedules.NAME]`` table: the config as written plus this schedule's overrides."""

    name: str
    config: dict  # as written (placeholders unresolved)
    optimizer: dict  # the study's optimizer unless overridden
    lr_interval: str
    hyperparams: dict = field(default_factory=dict)  # param-group key -> config, as written


@dataclass(frozen=True)
class Cell:
    """One trial of a study: ``schedule`` trained with ``seed``."""

    schedule: str
    seed: int
    spec: TrialSpec

    @property
    def key(self) -> str:
        return self.spec.key()


@dataclass(frozen=True)
class Study:
    """A validated study. Build it with :func:`load_study` or :func:`parse_study`.

    ``trial`` is the user's trial function (``module:function``) or None for lrlab's trainer;
    ``code_dir`` the folder user code is imported from (the study file's).
    """

    name: str
    description: str
    source: str
    task: str | None
    model: str | None
    epochs: int
    batch_size: int
    lr_interval: str
    seeds: tuple[int, ...]
    optimizer: dict
    baseline: str
    target: float | str | None
    data_dir: str | None
    schedules: dict[str, ScheduleEntry]
    iterations_per_epoch: int
    objective: str = DEFAULT_OBJECTIVE.name
    mode: str = DEFAULT_OBJECTIVE.mode
    trial: str | None = None
    settings: dict = field(default_factory=dict)
    time_limit: float | None = None
    margin: float | None = None
    code_dir: str | None = None
    #: every trial, seed-major (all schedules of the first seed first), so that a partly
    #: finished sweep already holds comparable cells
    cells: tuple[Cell, ...] = field(default=(), repr=False)

    @property
    def target_acc(self) -> float | str | None:  # the name before objectives were generic
        return self.target

    def variables(self, entry: ScheduleEntry, seed: int) -> dict[str, float]:
        """The placeholder values for one schedule and seed."""
        if self.trial is not None:
            return {**_numeric_settings(self.settings), "seed": seed}
        spe = self.iterations_per_epoch if entry.lr_interval == "step" else 1
        return {
            "epochs": self.epochs,
            "steps_per_epoch": spe,
            "total_steps": self.epochs * spe,
            "iterations_per_epoch": self.iterations_per_epoch,
            "total_iterations": self.epochs * self.iterations_per_epoch,
            "seed": seed,
        }

    def resolved_config(self, name: str, seed: int | None = None) -> dict:
        """The schedule config of ``name`` with placeholders resolved (for ``seed``, default the
        first seed)."""
        entry = self.schedules[name]
        seed = self.seeds[0] if seed is None else seed
        return resolve_placeholders(entry.config, self.variables(entry, seed), f"schedules.{name}")

    def resolved_hyperparams(self, name: str, seed: int | None = None) -> dict:
        """The ``hyperparams`` table of ``name`` (param-group key -> config) with placeholders
        resolved like :meth:`resolved_config`'s; ``{}`` when it has none."""
        entry = self.schedules[name]
        seed = self.seeds[0] if seed is None else seed
        where = f"schedules.{name}.hyperparams"
        return resolve_placeholders(entry.hyperparams, self.variables(entry, seed), where)

    def resolved_settings(self, seed: int) -> dict:
        """The ``[settings]`` table with placeholders resolved for ``seed``."""
        variables = {**_numeric_settings(self.settings), "seed": seed}
        return resolve_placeholders(self.settings, variables, "settings")

    def with_seeds(self, seeds: tuple[int, ...]) -> Study:
        """The same study with other seeds (its cells expanded again)."""
        study = dataclasses.replace(self, seeds=tuple(seeds), cells=())
        try:
            return dataclasses.replace(study, cells=tuple(_cells(study)))
        except ConfigError as exc:
            raise ConfigError(f"{self.source}: {exc}") from None

    def steps_per_epoch(self, entry: ScheduleEntry) -> int:
        return int(self.variables(entry, self.seeds[0]).get("steps_per_epoch", 1))

    def to_dict(self) -> dict:
        """The resolved settings (stored with the results; the report reads them back)."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "trial": self.trial,
            "task": self.task if self.trial is None else self.trial,
            "model": self.model if self.trial is None else "(the trial's own)",
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr_interval": self.lr_interval,
            "seeds": list(self.seeds),
            "optimizer": self.optimizer,
            "baseline": self.baseline,
            "objective": {"name": self.objective, "mode": self.mode},
            "target": self.target,
            "target_acc": self.target,
            "settings": self.settings,
            "time_limit": self.time_limit,
            "margin": self.margin,
            "data_dir": self.data_dir,
            "iterations_per_epoch": self.iterations_per_epoch,
            "schedules": {name: self._entry_dict(entry) for name, entry in self.schedules.items()},
        }

    def _entry_dict(self, entry: ScheduleEntry) -> dict:
        out = {
            "config": entry.config,
            "resolved": self.resolved_config(entry.name),
            "optimizer": entry.optimizer,
            "lr_interval": entry.lr_interval,
            "steps_per_epoch": self.steps_per_epoch(entry),
        }
        if entry.hyperparams:  # only when set: a stored study without them reads back as it was
            out["hyperparams"] = entry.hyperparams
            out["resolved_hyperparams"] = self.resolved_hyperparams(entry.name)
        return out


def _numeric_settings(settings: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a trial study's ``[settings]``, plus ``total_steps = epochs *
    steps_per_epoch`` when both are declared: the names its placeholders may use."""
    out: dict[str, float] = {
        k: v
        for k, v in settings.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    if "epochs" in out and "steps_per_epoch" in out and "total_steps" not in out:
        out["total_steps"] = out["epochs"] * out["steps_per_epoch"]
    return out


# --------------------------------------------------------------------------------------------
# The declarative description of a study file

_REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One top-level field of a study file: its meaning, checker and default.

    ``check(value, where)`` returns the value normalised or raises a one-line ConfigError;
    ``default`` is ``_REQUIRED`` for a required field; ``trainer_only`` fields belong to lrlab's
    trainer and are refused in a study with ``trial``.
    """

    name: str
    meaning: str
    check: Callable[[Any, str], Any]
    default: Any = None
    trainer_only: bool = False


def _study_name(value: Any, where: str) -> str:
    V.string(value, where)
    if not _NAME.match(value) or set(value) == {"."}:
        raise ConfigError(
            f"{where} must be letters, digits, '_', '-', '.', '+' (not '.' or '..'), "
            f"got {V.describe(value)}"
        )
    return value


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, list | tuple):
        seeds = V.sequence(
            value, where, lambda s, w: V.integer(s, w, lo=0), min_len=1, max_len=MAX_SEEDS
        )
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"{where} must not repeat, got {V.describe(list(value))}")
        return seeds
    try:
        count = V.integer(value, where, lo=1, hi=MAX_SEEDS)
    except ConfigError:
        raise ConfigError(
            f"{where} must be a count from 1 to {MAX_SEEDS} or a non-empty list of distinct "
            f"integers >= 0, got {V.describe(value)}"
        ) from None
    return tuple(range(count))


def _ref_or_name(value: Any, where: str) -> str:
    return V.string(value, where)


def _target(value: Any, where: str) -> float | str:
    if value == "baseline":
        return value
    try:
        return V.real(value, where)
    except ConfigError:
        raise ConfigError(
            f'{where} must be a number in the objective\'s units or "baseline", '
            f"got {V.describe(value)}"
        ) from None


def _target_acc(value: Any, where: str) -> float | str:
    if value == "baseline":
        return value
    try:
        return V.real(value, where, lo=0.0, hi=1.0, lo_open=True)
    except ConfigError:
        raise ConfigError(
            f'{where} must be a fraction in (0, 1] or "baseline", got {V.describe(value)}'
        ) from None


def _code_ref(value: Any, where: str) -> str:
    if not is_code_ref(value):
        raise ConfigError(
            f"{where} must be 'module:function', e.g. 'mypkg.train:train', got {V.describe(value)}"
        )
    return value


def _path(value: Any, where: str) -> str:
    return V.string(value, where)


def _time_limit(value: Any, where: str) -> float:
    return V.real(value, where, lo=0.0, lo_open=True)


def _settings(value: Any, where: str) -> dict:
    V.depth(value, where)
    return dict(V.mapping(value, where))


def _schedules(value: Any, where: str) -> Mapping:
    tables = V.mapping(value, where)
    if not tables:
        raise ConfigError(f"{where} must hold at least one [schedules.NAME] table")
    return tables


def _in(where: str, check: Callable[[Any], Any], value: Any) -> Any:
    """``check(value)`` with its error prefixed by ``where`` (for checkers that name the key)."""
    try:
        return check(value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _lr_interval(value: Any, where: str = "lr_interval") -> str:
    if value not in LR_INTERVALS:
        raise ConfigError(
            f"{where} must be one of {', '.join(LR_INTERVALS)}"
            f"{did_you_mean(str(value), LR_INTERVALS)}, got {V.describe(value)}"
        )
    return value


FIELDS: tuple[Field, ...] = (
    Field("name", "study name (default: the file name without .toml)", _study_name),
    Field("description", "one line shown by `lrlab compare --list`", V.string, ""),
    Field("trial", "the user's trial function, 'module:function' (replaces lrlab's trainer)", _code_ref),
    Field("task", "built-in dataset (mnist1d, digits, fashion-mnist, cifar10, cifar100) or 'module:function' returning a Task", _ref_or_name, _REQUIRED, True),
    Field("model", "built-in model name (see lrlab.lab.models) or 'module:attribute' called with the task", _ref_or_name, _REQUIRED, True),
    Field("data_dir", "folder of file-based datasets (relative paths are relative to the study file)", _path, None, True),
    Field("epochs", "training epochs per trial", lambda v, w: V.integer(v, w, lo=1), _REQUIRED, True),
    Field("batch_size", "mini-batch size", lambda v, w: V.integer(v, w, lo=1), 128, True),
    Field("lr_interval", '"step" (LR changes every iteration) or "epoch" (once per epoch)', _lr_interval, "step", True),
    Field("seeds", f"number of seeds (0..N-1, N <= {MAX_SEEDS}) or a list of seeds", _seeds, tuple(range(DEFAULT_SEEDS))),
    Field("optimizer", 'optimizer table, e.g. {type = "sgd", momentum = 0.9, weight_decay = 5e-4}', lambda v, w: normalize_optimizer(v), None, True),
    Field("baseline", "name of the schedule the others are tested against (default: the first)", V.string),
    Field("objective", "the metric the study is judged on (default: test_acc with lrlab's trainer)", V.string),
    Field("mode", '"min" or "max": whether a lower or a higher objective is better', lambda v, w: V.choice(v, w, MODES)),
    Field("target", 'objective value to reach, in its units, or "baseline" (the baseline\'s mean)', _target),
    Field("target_acc", 'test accuracy to reach, in (0, 1], or "baseline" (the old name of target)', _target_acc),
    Field("time_limit", "seconds a trial may run before it is ended and recorded failed", _time_limit),
    Field("margin", "a difference of the objective (its units) small enough to call two schedules equivalent", lambda v, w: V.real(v, w, lo=0.0)),
    Field("settings", "[settings]: a free-form table the user's trial function reads", _settings, {}),
    Field("schedules", "[schedules.NAME] tables, each a schedule or policy config", _schedules, _REQUIRED),
)  # fmt: skip
FIELD_NAMES = tuple(f.name for f in FIELDS)


def _read_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of :data:`FIELDS`, checked and defaulted (the parser's one loop)."""
    if not isinstance(data, Mapping):
        raise ConfigError("a study file must be a TOML table")
    V.depth(data, "study")
    for key in data:
        if key not in FIELD_NAMES:
            raise ConfigError(
                f"unknown field {key!r}{did_you_mean(key, FIELD_NAMES)}; "
                f"allowed: {', '.join(FIELD_NAMES)}"
            )
    user_trial = "trial" in data
    values: dict[str, Any] = {}
    for f in FIELDS:
        if user_trial and f.trainer_only:
            if f.name in data:
                raise ConfigError(
                    f"{f.name} is for lrlab's trainer; with trial = ..., your function "
                    "trains: put what it needs in [settings]"
                )
            values[f.name] = None
        elif f.name in data:
            values[f.name] = f.check(data[f.name], f.name)
        elif f.default is _REQUIRED:
            raise ConfigError(f"missing required field {f.name!r}")
        else:
            values[f.name] = f.default
    return values


# --------------------------------------------------------------------------------------------
# Loading and validation


def _check_trainer_inputs(values: dict, code_dir: str | None) -> None:
    """Built-in task and model checked against each other; user code imported and checked."""
    from lrlab.lab.models import build_any_model
    from lrlab.lab.tasks import load_user_task, task_info

    task, model = values["task"], values["model"]
    try:
        loaded = load_user_task(task, code_dir=code_dir) if is_code_ref(task) else task_info(task)
    except ConfigError as exc:
        raise ConfigError(f"task: {str(exc).removeprefix('task: ')}") from None
    if is_code_ref(model):
        import torch

        if not is_code_ref(task):
            from lrlab.lab.tasks import load_task

            loaded = load_task(task, data_dir=values["data_dir"])
        with torch.random.fork_rng():
            build_any_model(model, loaded, code_dir=code_dir)  # a bad model fails here
        return
    from lrlab.lab.models import check_model

    try:
        check_model(model, loaded)
    except ConfigError as exc:
        raise ConfigError(f"model: {str(exc).removeprefix('model ')}") from None


def _schedule_entries(values: dict) -> dict[str, ScheduleEntry]:
    entries: dict[str, ScheduleEntry] = {}
    for sname, table in values["schedules"].items():
        swhere = f"schedules.{sname}"
        if not _NAME.match(sname) or set(sname) == {"."}:
            raise ConfigError(
                f"schedule name {sname!r} must be letters, digits, '_', '-', '.', '+'"
            )
        if not isinstance(table, Mapping):
            raise ConfigError(f"{swhere}: must be a table (a schedule config with a 'type' key)")
        overrides = [k for k in TRAINER_OVERRIDES if k in table]
        if values["trial"] is not None and overrides:
            raise ConfigError(f"{swhere}: {overrides[0]} is for lrlab's trainer, not with trial")
        optimizer = (
            _in(swhere, normalize_optimizer, table["optimizer"])
            if "optimizer" in table
            else values["optimizer"]
        )
        entries[sname] = ScheduleEntry(
            name=sname,
            config={k: v for k, v in table.items() if k not in SCHEDULE_OVERRIDES},
            optimizer=optimizer,
            lr_interval=_in(swhere, _lr_interval, table["lr_interval"])
            if "lr_interval" in table
            else values["lr_interval"],
            hyperparams=_entry_hyperparams(table, swhere, optimizer, values["trial"]),
        )
    return entries


def _entry_hyperparams(table: Mapping, where: str, optimizer: dict, trial: str | None) -> dict:
    """A schedule's ``hyperparams`` table, its keys checked against the optimizer that trains it
    (a user trial builds its own optimizer: its keys are checked when its scheduler is built)."""
    if "hyperparams" not in table:
        return {}
    own = optimizer if trial is None else None
    return check_hyperparams(table["hyperparams"], f"{where}.hyperparams", own)


def _objective(values: dict) -> tuple[str, str]:
    objective, mode = values["objective"], values["mode"]
    if objective is None:
        if values["trial"] is not None:
            raise ConfigError(
                "objective: a study with trial = ... must name its objective "
                '(a metric the trial reports, e.g. objective = "val_loss") and its mode'
            )
        return DEFAULT_OBJECTIVE.name, mode or DEFAULT_OBJECTIVE.mode
    if mode is None:
        raise ConfigError(
            f'mode: with objective = {objective!r}, say whether "min" or "max" is better'
        )
    return objective, mode


def _apply_overrides(
    values: dict, seeds: int | None, epochs: int | None, settings: Mapping | None
) -> None:
    """``--seeds`` / ``--epochs`` / settings overrides (quick runs)."""
    if seeds is not None:
        values["seeds"] = _seeds(seeds, "seeds")
    if settings:
        values["settings"] = {**values["settings"], **_settings(dict(settings), "settings")}
    if epochs is None:
        return
    epochs = V.integer(epochs, "epochs", lo=1)
    if values["trial"] is None:
        values["epochs"] = epochs
    elif "epochs" in values["settings"]:
        values["settings"] = {**values["settings"], "epochs": epochs}
    else:
        raise ConfigError("--epochs: this study's [settings] has no epochs to override")


def _data_dir(value: str | None, base_dir: str | Path | None) -> str | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return os.path.abspath(path)


def parse_study(
    data: Mapping[str, Any],
    *,
    source: str = "<study>",
    name: str | None = None,
    seeds: int | None = None,
    epochs: int | None = None,
    base_dir: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
    trial_fn: Callable | None = None,
) -> Study:
    """Validate a study read from TOML (a dict) and expand it.

    ``seeds`` / ``epochs`` / ``settings`` override the file's values (quick runs); ``base_dir``
    is where a relative ``data_dir`` is taken from, and the folder user code is imported from.
    ``trial_fn`` is the object ``trial`` names, when the caller has it (:func:`lrlab.lab.compare`):
    its signature is checked instead of importing it. Every error is a one-line ConfigError
    starting with ``source``.
    """
    try:
        return _parse(data, name, seeds, epochs, base_dir, settings, source, trial_fn)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _parse(data, name, seeds, epochs, base_dir, settings, source, trial_fn=None) -> Study:
    values = _read_fields(data)
    _apply_overrides(values, seeds, epochs, settings)
    values["name"] = values["name"] or _study_name(name or "study", "name (the file name)")
    code_dir = os.path.abspath(base_dir) if base_dir is not None else None
    values["data_dir"] = _data_dir(values["data_dir"], base_dir)
    if values["optimizer"] is None:
        values["optimizer"] = default_optimizer() if values["trial"] is None else {}
    values["lr_interval"] = values["lr_interval"] or "step"
    entries = _schedule_entries(values)
    baseline = values["baseline"] if values["baseline"] is not None else next(iter(entries))
    if baseline not in entries:
        raise ConfigError(
            f"baseline {baseline!r} is not a schedule of this study"
            f"{did_you_mean(str(baseline), entries)}; allowed: {', '.join(entries)}"
        )
    objective = _objective(values)
    study = _study_value(values, source, code_dir, entries, baseline, *objective, trial_fn)
    return dataclasses.replace(study, cells=tuple(_cells(study)))


def _study_value(values, source, code_dir, entries, baseline, objective, mode, trial_fn) -> Study:
    from lrlab.lab.trial import check_signature, load_user_callable

    if values["trial"] is not None:
        if trial_fn is not None:
            check_signature(trial_fn, "trial", values["trial"], "the trial")
        else:
            load_user_callable(values["trial"], "trial", code_dir, "the trial")
        numeric = _numeric_settings(values["settings"])
        epochs = int(numeric.get("epochs", 1)) if float(numeric.get("epochs", 1)) >= 1 else 1
        ipe = (
            int(numeric.get("steps_per_epoch", 1)) if numeric.get("steps_per_epoch", 1) >= 1 else 1
        )
        batch_size, lr_interval = 1, "step"
    else:
        _check_trainer_inputs(values, code_dir)
        epochs, batch_size, lr_interval = (
            values["epochs"],
            values["batch_size"],
            values["lr_interval"],
        )
        try:
            ipe = iterations_per_epoch(values["task"], batch_size, values["data_dir"], code_dir)
        except ConfigError:
            raise
        except LrlabError as exc:
            raise ConfigError(f"task: {exc}") from None
    target = values["target"] if values["target"] is not None else values["target_acc"]
    return Study(
        name=values["name"],
        description=values["description"],
        source=source,
        task=values["task"],
        model=values["model"],
        epochs=epochs,
        batch_size=batch_size,
        lr_interval=lr_interval,
        seeds=values["seeds"],
        optimizer=values["optimizer"],
        baseline=baseline,
        target=target,
        data_dir=values["data_dir"],
        schedules=entries,
        iterations_per_epoch=ipe,
        objective=objective,
        mode=mode,
        trial=values["trial"],
        settings=values["settings"],
        time_limit=values["time_limit"],
        margin=values["margin"],
        code_dir=code_dir,
    )


def _cells(study: Study) -> list[Cell]:
    """Every (schedule, seed) trial, seed-major; each schedule built, so a bad one fails here."""
    cells = []
    for seed in study.seeds:
        settings = study.resolved_settings(seed) if study.trial is not None else {}
        for sname, entry in study.schedules.items():
            try:
                spec = _cell_spec(study, entry, seed, settings)
            except ConfigError as exc:
                message = str(exc)
                inside = message.startswith(f"schedules.{sname}") or message.startswith("settings")
                raise ConfigError(message if inside else f"schedules.{sname}: {message}") from None
            except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
                # ArithmeticError: a 400-digit number that a schedule's check turns into a float
                raise ConfigError(f"schedules.{sname}: {one_line(exc)}") from None
            cells.append(Cell(sname, seed, spec))
    return cells


def _cell_spec(study: Study, entry: ScheduleEntry, seed: int, settings: dict) -> TrialSpec:
    """One cell's spec, its schedule and every hyper-parameter schedule built (so checked)."""
    from lrlab import from_config

    config = study.resolved_config(entry.name, seed)
    from_config(config)
    hyperparams = study.resolved_hyperparams(entry.name, seed)
    for key, sub in hyperparams.items():
        where = f"schedules.{entry.name}.hyperparams.{key}"
        try:
            from_config(sub, where=where)
        except ConfigError as exc:  # a policy's own checks do not know where it sits
            message = str(exc)
            raise ConfigError(
                message if message.startswith(where) else f"{where}: {message}"
            ) from None
    return TrialSpec(
        task=study.task,
        model=study.model,
        schedule=config,
        epochs=study.epochs,
        batch_size=study.batch_size,
        seed=seed,
        optimizer=entry.optimizer or {"type": "sgd"},
        lr_interval=entry.lr_interval,
        data_dir=study.data_dir,
        trial=study.trial,
        settings=settings,
        schedule_name=entry.name,
        code_dir=study.code_dir,
        objective=study.objective,
        hyperparams=hyperparams,
    )


# --------------------------------------------------------------------------------------------
# Files


def builtin_studies() -> dict[str, str]:
    """Built-in study name -> its one-line description."""
    out = {}
    folder = resources.files("lrlab.lab") / "studies"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            data = tomllib.loads(item.read_text())
            out[item.name[: -len(".toml")]] = str(data.get("description", ""))
    return out


def _read_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        hint = ""
        if text.lstrip().startswith(("{", "[{", "[\n")) or source.endswith(".json"):
            hint = " (studies are TOML files, not JSON: see docs/lab-compare.md)"
        raise ConfigError(f"{source}: not valid TOML: {str(exc).splitlines()[0]}{hint}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to read") from None


def load_study(
    study: str | os.PathLike = "default",
    *,
    seeds: int | None = None,
    epochs: int | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Study:
    """Load a built-in study by name, or a study file by path (anything ending in .toml or an
    existing file). ``seeds`` / ``epochs`` / ``settings`` override the file (quick runs)."""
    text_name = os.fspath(study)
    path = Path(text_name).expanduser()
    if text_name.endswith(".json"):
        raise ConfigError(f"{text_name}: studies are TOML files (.toml), not JSON")
    if text_name.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"study file {text_name} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a UTF-8 text file") from None
        data = _read_toml(text, str(path))
        return parse_study(
            data,
            source=str(path),
            name=path.stem,
            base_dir=path.parent,
            seeds=seeds,
            epochs=epochs,
            settings=settings,
        )
    names = builtin_studies()
    if text_name not in names:
        raise ConfigError(
            f"unknown study {text_name!r}{did_you_mean(text_name, names)}; built-in studies: "
            f"{', '.join(names)} (or give the path of a .toml study file)"
        )
    item = resources.files("lrlab.lab") / "studies" / f"{text_name}.toml"
    data = _read_toml(item.read_text(encoding="utf-8"), f"{text_name}.toml")
    return parse_study(
        data,
        source=f"{text_name}.toml",
        name=text_name,
        seeds=seeds,
        epochs=epochs,
        settings=settings,
    )
