"""Study files: a TOML description of one comparison (task, model, training, schedules, seeds).

A study expands into one :class:`~lrlab.lab.trainer.TrialSpec` per (schedule, seed) cell. It is
validated completely when it is loaded, every schedule included (each is built with
:func:`lrlab.from_config` for every seed), so a bad study fails before any training starts, with
a one-line :class:`~lrlab.errors.ConfigError` that names the field.

Placeholders keep a study readable whatever its length: a string value ``"${EXPR}"`` anywhere in
a schedule table is replaced, per trial, by the value of ``EXPR``, an arithmetic expression
(numbers, ``+ - * / //``, parentheses) over the names in :data:`PLACEHOLDERS`; the result is
rounded to the nearest integer (placeholders are step counts and seeds). For example
``milestones = ["${0.5*total_steps}", "${0.75*total_steps}"]``. Nothing else is evaluated.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from lrlab.errors import ConfigError, LrlabError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The names a placeholder may use, and what they mean.
PLACEHOLDERS = {
    "epochs": "number of training epochs",
    "steps_per_epoch": "schedule steps per epoch: optimizer iterations per epoch when the LR is "
    'stepped per iteration (lr_interval = "step"), 1 when it is stepped per epoch',
    "total_steps": "epochs * steps_per_epoch: the horizon of a decaying schedule",
    "iterations_per_epoch": "optimizer iterations (mini-batches) per epoch, whatever lr_interval is",
    "total_iterations": "epochs * iterations_per_epoch",
    "seed": "the trial's seed (e.g. a different RALR draw per seed)",
}

#: Top-level keys of a study file, with a one-line meaning (also the list typos are checked on).
FIELDS = {
    "name": "study name (default: the file name without .toml)",
    "description": "one line shown by `lrlab compare --list`",
    "task": "dataset: mnist1d, digits, fashion-mnist, cifar10, cifar100",
    "model": "model name (see lrlab.lab.models)",
    "data_dir": "folder of file-based datasets (relative paths are relative to the study file)",
    "epochs": "training epochs per trial",
    "batch_size": "mini-batch size",
    "lr_interval": '"step" (LR changes every iteration) or "epoch" (once per epoch)',
    "seeds": "number of seeds (0..N-1) or a list of seeds",
    "optimizer": 'optimizer table, e.g. {type = "sgd", momentum = 0.9, weight_decay = 5e-4}',
    "baseline": "name of the schedule the others are tested against (default: the first)",
    "target_acc": 'test accuracy to reach, in (0, 1], or "baseline" (the baseline\'s mean final '
    "test accuracy)",
    "schedules": "[schedules.NAME] tables, each a schedule or policy config",
}
REQUIRED = ("task", "model", "epochs", "schedules")
#: Keys of a [schedules.NAME] table that are trial settings for that schedule, not schedule config.
SCHEDULE_OVERRIDES = ("optimizer", "lr_interval")
LR_INTERVALS = ("step", "epoch")
DEFAULTS = {"batch_size": 128, "lr_interval": "step", "seeds": 5}

_PLACEHOLDER = re.compile(r"^\$\{(.*)\}$")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


# --------------------------------------------------------------------------------------------
# Placeholders: a tiny arithmetic evaluator (ast-walked, no eval)

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def evaluate_placeholder(expr: str, variables: Mapping[str, float]) -> int:
    """The value of ``expr`` (numbers, the names in ``variables``, ``+ - * / //``, parentheses),
    rounded to the nearest integer (halves away from zero).

    >>> evaluate_placeholder("0.5*total_steps", {"total_steps": 391})
    196
    >>> evaluate_placeholder("(epochs - 1) // 2", {"epochs": 10})
    4
    """
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"'${{{expr}}}' is not an arithmetic expression") from None

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in variables:
                raise ValueError(
                    f"unknown name {node.id!r} in '${{{expr}}}'"
                    f"{did_you_mean(node.id, variables)}; allowed: {', '.join(sorted(variables))}"
                )
            return variables[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        raise ValueError(f"'${{{expr}}}' may only use numbers, names, + - * / // and parentheses")

    try:
        value = walk(tree)
    except ZeroDivisionError:
        raise ValueError(f"'${{{expr}}}' divides by zero") from None
    if not math.isfinite(value):
        raise ValueError(f"'${{{expr}}}' is not finite")
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


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
                f'{where}: a placeholder must be the whole string, like "${{total_steps}}", got {value!r}'
            )
        return value
    if isinstance(value, Mapping):
        return {
            k: resolve_placeholders(v, variables, f"{where}.{k}" if where else k)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [resolve_placeholders(v, variables, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------------------------
# Steps per epoch


@lru_cache(maxsize=16)
def _train_size(task: str, data_dir: str | None) -> int:
    from lrlab.lab.tasks import load_task

    return len(load_task(task, data_dir=data_dir).y_train)


def iterations_per_epoch(task: str, batch_size: int, data_dir: str | None = None) -> int:
    """Optimizer iterations per epoch of ``task`` at ``batch_size``, as the trainer batches."""
    from lrlab.lab.trainer import steps_per_epoch

    return steps_per_epoch(_train_size(task, data_dir), batch_size)


# --------------------------------------------------------------------------------------------
# The study value


@dataclass(frozen=True)
class ScheduleEntry:
    """One ``[schedules.NAME]`` table: the config as written plus this schedule's overrides."""

    name: str
    config: dict  # as written (placeholders unresolved)
    optimizer: dict  # the study's optimizer unless overridden
    lr_interval: str


@dataclass(frozen=True)
class Cell:
    """One trial of a study: ``schedule`` trained with ``seed``."""

    schedule: str
    seed: int
    spec: Any  # TrialSpec

    @property
    def key(self) -> str:
        return self.spec.key()


@dataclass(frozen=True)
class Study:
    """A validated study. Build it with :func:`load_study` or :func:`parse_study`."""

    name: str
    description: str
    source: str
    task: str
    model: str
    epochs: int
    batch_size: int
    lr_interval: str
    seeds: tuple[int, ...]
    optimizer: dict
    baseline: str
    target_acc: float | str | None
    data_dir: str | None
    schedules: dict[str, ScheduleEntry]
    iterations_per_epoch: int
    #: every trial, seed-major (all schedules of the first seed first), so that a partly
    #: finished sweep already holds comparable cells
    cells: tuple[Cell, ...] = field(default=(), repr=False)

    def variables(self, entry: ScheduleEntry, seed: int) -> dict[str, int]:
        """The placeholder values for one schedule and seed."""
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

    def to_dict(self) -> dict:
        """The resolved settings (stored with the results; the report reads them back)."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "task": self.task,
            "model": self.model,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr_interval": self.lr_interval,
            "seeds": list(self.seeds),
            "optimizer": self.optimizer,
            "baseline": self.baseline,
            "target_acc": self.target_acc,
            "data_dir": self.data_dir,
            "iterations_per_epoch": self.iterations_per_epoch,
            "schedules": {
                name: {
                    "config": entry.config,
                    "resolved": self.resolved_config(name),
                    "optimizer": entry.optimizer,
                    "lr_interval": entry.lr_interval,
                    "steps_per_epoch": self.variables(entry, self.seeds[0])["steps_per_epoch"],
                }
                for name, entry in self.schedules.items()
            },
        }


# --------------------------------------------------------------------------------------------
# Loading and validation


def _error(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _check_int(data: Mapping, key: str, where: str, lo: int = 1) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise _error(where, f"{key} must be an integer >= {lo}, got {value!r}")
    return value


def _check_str(data: Mapping, key: str, where: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise _error(where, f"{key} must be a non-empty string, got {value!r}")
    return value


def _check_keys(data: Mapping, allowed, where: str, what: str) -> None:
    for key in data:
        if key not in allowed:
            raise _error(
                where,
                f"unknown {what} {key!r}{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}",
            )


def _check_optimizer(value: Any, where: str) -> dict:
    from lrlab.lab.trainer import normalize_optimizer

    try:
        return normalize_optimizer(value)
    except ConfigError as exc:
        raise _error(where, str(exc)) from None


def _check_lr_interval(value: Any, where: str) -> str:
    if value not in LR_INTERVALS:
        raise _error(
            where,
            f"lr_interval must be one of {', '.join(LR_INTERVALS)}{did_you_mean(str(value), LR_INTERVALS)}, got {value!r}",
        )
    return value


def _check_model(model: str, task: str, where: str) -> None:
    from lrlab.lab.models import MODELS, compatible_models
    from lrlab.lab.tasks import task_info

    if model not in MODELS:
        raise _error(
            where,
            f"model: unknown model {model!r}{did_you_mean(model, MODELS)}; allowed: {', '.join(MODELS)}",
        )
    shape = task_info(task).input_shape
    reason = MODELS[model].check(shape)
    if reason is not None:
        raise _error(
            where,
            f"model: {model!r} {reason}; task {task!r} has input shape {shape} "
            f"(models that fit: {', '.join(compatible_models(shape))})",
        )


def parse_study(
    data: Mapping[str, Any],
    *,
    source: str = "<study>",
    name: str | None = None,
    seeds: int | None = None,
    epochs: int | None = None,
    base_dir: str | Path | None = None,
) -> Study:
    """Validate a study read from TOML (a dict) and expand it.

    ``seeds`` / ``epochs`` override the file's values (quick runs); ``base_dir`` is where a relative
    ``data_dir`` is taken from. Every error is a one-line ConfigError starting with ``source``.
    """
    from lrlab import from_config
    from lrlab.lab.tasks import task_info
    from lrlab.lab.trainer import TrialSpec

    where = source
    if not isinstance(data, Mapping):
        raise _error(where, "a study file must be a TOML table")
    _check_keys(data, list(FIELDS), where, "field")
    for key in REQUIRED:
        if key not in data:
            raise _error(where, f"missing required field {key!r}")
    data = {**DEFAULTS, **data}
    if epochs is not None:
        data["epochs"] = epochs
    if seeds is not None:
        data["seeds"] = seeds

    study_name = data.get("name", name or "study")
    if not isinstance(study_name, str) or not _NAME.match(study_name):
        raise _error(where, f"name must be letters, digits, '_', '-', '.', '+', got {study_name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _error(where, f"description must be a string, got {description!r}")
    task = _check_str(data, "task", where)
    try:
        task_info(task)
    except ConfigError as exc:
        raise _error(where, f"task: {exc}") from None
    model = _check_str(data, "model", where)
    _check_model(model, task, where)
    n_epochs = _check_int(data, "epochs", where)
    batch_size = _check_int(data, "batch_size", where)
    lr_interval = _check_lr_interval(data["lr_interval"], where)

    raw_seeds = data["seeds"]
    if isinstance(raw_seeds, int) and not isinstance(raw_seeds, bool):
        if raw_seeds < 1:
            raise _error(where, f"seeds must be a count >= 1 or a list of seeds, got {raw_seeds!r}")
        seed_list = tuple(range(raw_seeds))
    elif (
        isinstance(raw_seeds, list)
        and raw_seeds
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw_seeds)
    ):
        if len(set(raw_seeds)) != len(raw_seeds):
            raise _error(where, f"seeds must not repeat, got {raw_seeds!r}")
        seed_list = tuple(raw_seeds)
    else:
        raise _error(
            where,
            f"seeds must be a count >= 1 or a non-empty list of integers >= 0, got {raw_seeds!r}",
        )

    if "optimizer" in data:
        optimizer = _check_optimizer(data["optimizer"], where)
    else:
        optimizer = _check_optimizer(
            TrialSpec.__dataclass_fields__["optimizer"].default_factory(), where
        )

    data_dir = data.get("data_dir")
    if data_dir is not None:
        if not isinstance(data_dir, str) or not data_dir:
            raise _error(where, f"data_dir must be a path string, got {data_dir!r}")
        path = Path(data_dir).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        data_dir = os.path.abspath(path)

    tables = data["schedules"]
    if not isinstance(tables, Mapping) or not tables:
        raise _error(where, "schedules must hold at least one [schedules.NAME] table")
    entries: dict[str, ScheduleEntry] = {}
    for sname, table in tables.items():
        swhere = f"{where}: schedules.{sname}"
        if not _NAME.match(sname):
            raise _error(
                where, f"schedule name {sname!r} must be letters, digits, '_', '-', '.', '+'"
            )
        if not isinstance(table, Mapping):
            raise ConfigError(f"{swhere}: must be a table (a schedule config with a 'type' key)")
        config = {k: v for k, v in table.items() if k not in SCHEDULE_OVERRIDES}
        entries[sname] = ScheduleEntry(
            name=sname,
            config=config,
            optimizer=_check_optimizer(table["optimizer"], swhere)
            if "optimizer" in table
            else optimizer,
            lr_interval=_check_lr_interval(table["lr_interval"], swhere)
            if "lr_interval" in table
            else lr_interval,
        )

    baseline = data.get("baseline", next(iter(entries)))
    if baseline not in entries:
        raise _error(
            where,
            f"baseline {baseline!r} is not a schedule of this study{did_you_mean(str(baseline), entries)}; allowed: {', '.join(entries)}",
        )
    target = data.get("target_acc")
    if target is not None and target != "baseline":
        if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1:
            raise _error(
                where, f'target_acc must be a fraction in (0, 1] or "baseline", got {target!r}'
            )
        target = float(target)

    try:
        ipe = iterations_per_epoch(task, batch_size, data_dir)
    except LrlabError as exc:
        raise _error(where, f"task: {exc}") from None

    study = Study(
        name=study_name,
        description=description,
        source=source,
        task=task,
        model=model,
        epochs=n_epochs,
        batch_size=batch_size,
        lr_interval=lr_interval,
        seeds=seed_list,
        optimizer=optimizer,
        baseline=baseline,
        target_acc=target,
        data_dir=data_dir,
        schedules=entries,
        iterations_per_epoch=ipe,
    )
    cells = []
    for seed in seed_list:
        for sname, entry in entries.items():
            try:
                config = study.resolved_config(sname, seed)
            except ConfigError as exc:  # already names schedules.NAME.key
                raise ConfigError(f"{where}: {exc}") from None
            try:
                from_config(config)  # a bad schedule fails here, before any training
                spec = TrialSpec(
                    task=task,
                    model=model,
                    schedule=config,
                    epochs=n_epochs,
                    batch_size=batch_size,
                    seed=seed,
                    optimizer=entry.optimizer,
                    lr_interval=entry.lr_interval,
                    data_dir=data_dir,
                )
            except (TypeError, ValueError) as exc:  # ConfigError is a ValueError
                raise ConfigError(f"{where}: schedules.{sname}: {exc}") from None
            cells.append(Cell(sname, seed, spec))
    return dataclasses.replace(study, cells=tuple(cells))


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
        raise ConfigError(f"{source}: not valid TOML: {str(exc).splitlines()[0]}") from None


def load_study(
    study: str | os.PathLike = "default", *, seeds: int | None = None, epochs: int | None = None
) -> Study:
    """Load a built-in study by name, or a study file by path (anything ending in .toml or an
    existing file). ``seeds`` / ``epochs`` override the file (quick runs)."""
    text_name = os.fspath(study)
    path = Path(text_name).expanduser()
    if text_name.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"study file {text_name} does not exist")
        data = _read_toml(path.read_text(encoding="utf-8"), str(path))
        return parse_study(
            data, source=str(path), name=path.stem, seeds=seeds, epochs=epochs, base_dir=path.parent
        )
    names = builtin_studies()
    if text_name not in names:
        raise ConfigError(
            f"unknown study {text_name!r}{did_you_mean(text_name, names)}; built-in studies: "
            f"{', '.join(names)} (or give the path of a .toml study file)"
        )
    item = resources.files("lrlab.lab") / "studies" / f"{text_name}.toml"
    data = _read_toml(item.read_text(encoding="utf-8"), f"{text_name}.toml")
    return parse_study(data, source=f"{text_name}.toml", name=text_name, seeds=seeds, epochs=epochs)
