"""``lrlab.lab.compare``: the lab from Python, on the user's own trial function.

::

    from lrlab.lab import compare

    def train(trial):                      # at the top level of a module (or a guarded script)
        ...
        trial.report(epoch, val_loss=v)

    if __name__ == "__main__":             # worker processes import this file: keep the guard
        result = compare(
            train,
            {"cosine": {"type": "cosine", "lr": 0.1, "total": 1000},
             "step": {"type": "multistep", "lr": 0.1, "milestones": [500, 750]}},
            seeds=5, objective="val_loss", mode="min", settings={"epochs": 10},
        )
        print(result.verdicts)

Worker processes (and Ray workers) reach ``train`` by importing it, so it must be a top-level
function of a module or of a script whose ``compare`` call is under ``if __name__ ==
"__main__":``. A lambda, a closure or an unguarded script is refused in one line before
anything runs; ``workers=0`` (inline) accepts any callable.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrlab.errors import ConfigError

__all__ = ["CompareResult", "compare", "trial_reference"]

_GUARD = re.compile(r"^if\s+__name__\s*==\s*['\"]__main__['\"]\s*:", re.MULTILINE)


@dataclass
class CompareResult:
    """What :func:`compare` returns: the report, its table rows, the verdicts by schedule, the
    written files, the sweep's summary and the database path."""

    report: Any
    rows: list[dict[str, str]]
    verdicts: dict[str, str]
    paths: dict[str, Path]
    summary: Any
    db: Path
    study: Any = field(repr=False, default=None)


def _main_script_reference(fn: Callable) -> tuple[str, str]:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None:
        raise ConfigError(
            f"train: {fn.__qualname__} is defined interactively (no file): worker processes "
            "cannot import it; put it in a module, or pass workers=0"
        )
    source = Path(path).read_text(encoding="utf-8", errors="replace")
    if not _GUARD.search(source):
        raise ConfigError(
            f"train: {fn.__qualname__} is defined in the script {path}, which worker processes "
            "import: put the compare(...) call under 'if __name__ == \"__main__\":' "
            "(or pass workers=0)"
        )
    stem = Path(path).stem
    if not stem.isidentifier():
        raise ConfigError(f"train: the script name {Path(path).name!r} is not importable")
    return f"{stem}:{fn.__qualname__}", str(Path(path).resolve().parent)


def trial_reference(fn: Callable) -> tuple[str, str | None]:
    """``(module:qualname, folder to import it from or None)`` for a trial function that worker
    processes can import; a one-line ConfigError when they cannot (lambda, closure, ...)."""
    if isinstance(fn, str):
        return fn, None
    qualname = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if not callable(fn) or qualname is None or module is None:
        raise ConfigError(f"train must be a function or 'module:function', got {fn!r}")
    if "<lambda>" in qualname:
        raise ConfigError(
            "train is a lambda: worker processes cannot import it; define it with def at the "
            "top level of a module (or pass workers=0)"
        )
    if "<locals>" in qualname:
        raise ConfigError(
            f"train: {qualname} is defined inside a function (a closure): worker processes "
            "cannot import it; move it to the top level of a module (or pass workers=0)"
        )
    if module == "__main__":
        return _main_script_reference(fn)
    try:
        pickle.dumps(fn)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ConfigError(f"train: worker processes cannot import {qualname}: {exc}") from None
    return f"{module}:{qualname}", None


def _inline_reference(fn: Callable) -> str:
    """The name an inline trial function is stored under: its importable reference when it has
    one (so that the same trials are found again with worker processes), else its name."""
    try:
        return trial_reference(fn)[0]
    except ConfigError:
        name = re.sub(r"\W", "_", getattr(fn, "__qualname__", "train")).strip("_") or "train"
        return f"__inline__:{name if name[0].isalpha() else 'f' + name}"


def _study_data(schedules: Mapping, ref: str | None, options: dict) -> dict:
    data: dict[str, Any] = {"schedules": dict(schedules), "name": options.pop("name") or "compare"}
    if ref is not None:
        data["trial"] = ref
    for key, value in options.items():
        if value is not None:
            data[key] = value
    return data


def _load(train, study_or_schedules, *, inline: bool, seeds, settings, options: dict):
    """The study to run and the trial function object for the inline executor (or None)."""
    from lrlab.lab.study import load_study, parse_study

    user_fn = train if callable(train) and not isinstance(train, str) else None
    if train is None:
        ref, code_dir = None, None
    elif inline and user_fn is not None:  # in this process: any callable, nothing imported
        ref, code_dir = _inline_reference(user_fn), None
    else:
        ref, code_dir = trial_reference(train)
    if isinstance(study_or_schedules, Mapping):
        data = _study_data(study_or_schedules, ref, options)
        study = parse_study(
            data,
            source="compare()",
            seeds=seeds,
            settings=settings,
            base_dir=code_dir or os.getcwd(),
            trial_fn=user_fn if ref is not None else None,
        )
        return study, user_fn
    if train is not None:
        raise ConfigError(
            "compare(train, study): with a study file, name the trial function in the file "
            "(trial = 'module:function'), and pass train=None; or pass a dict of schedules"
        )
    return load_study(study_or_schedules, seeds=seeds, settings=settings), None


def compare(
    train: Callable | str | None,
    study_or_schedules: str | os.PathLike | Mapping[str, Mapping],
    *,
    seeds: int | Iterable[int] | None = None,
    objective: str | None = None,
    mode: str | None = None,
    settings: Mapping[str, Any] | None = None,
    baseline: str | None = None,
    name: str | None = None,
    time_limit: float | None = None,
    out: str | os.PathLike | None = None,
    db: str | os.PathLike | None = None,
    workers: int | None = None,
    executor: str = "local",
    device: str | None = None,
    threads: int = 1,
    progress: bool = False,
    **executor_options: Any,
) -> CompareResult:
    """Compare schedules on the user's trial function ``train`` and return the report.

    Args:
        train: the trial function (``def train(trial)``), a ``'module:function'`` string, or
            None when ``study_or_schedules`` is a study file (or built-in name) that says what
            trains.
        study_or_schedules: schedule name -> schedule config, or a study file / built-in name.
        seeds: how many seeds (0..N-1) or which; None: 5 for a dict of schedules, the file's
            for a study file.
        objective, mode: the metric the comparison is judged on and "min" / "max".
        settings: the ``[settings]`` table ``trial.settings`` gives (it may declare
            ``epochs`` and ``steps_per_epoch``: placeholders ``${total_steps}`` use them).
        out, db: report folder (default ``lrlab-out/NAME``) and database (``OUT/results.sqlite``).
        workers: local worker processes (None: one per core; 0: inline, in this process).
        executor: ``"local"`` or ``"ray"`` (``executor_options``, e.g. ``address``, go to it).

    Resumable like ``lrlab compare``: a second call with the same arguments trains nothing.
    """
    inline = executor == "local" and workers == 0
    seed_value = list(seeds) if seeds is not None and not isinstance(seeds, int) else seeds
    options: dict[str, Any] = {"objective": objective, "mode": mode, "baseline": baseline}
    options.update(name=name, time_limit=time_limit)
    study, user_fn = _load(
        train,
        study_or_schedules,
        inline=inline,
        seeds=seed_value,
        settings=settings,
        options=options,
    )
    kwargs: dict[str, Any] = {"workers": workers, "device": device, "threads": threads}
    if inline:
        kwargs["user_fn"] = user_fn
    return _run(study, out, db, executor, {**kwargs, **executor_options}, progress)


def _run(study, out, db, executor: str, kwargs: dict, progress: bool) -> CompareResult:
    from lrlab.lab.report import build_report, table_rows, write_report
    from lrlab.lab.store import Store
    from lrlab.lab.sweep import make_executor, run_sweep

    out_dir = Path(out) if out is not None else Path("lrlab-out") / study.name
    db_path = Path(db) if db is not None else out_dir / "results.sqlite"
    runner = make_executor(executor, **kwargs)
    try:
        with Store(db_path) as store:
            summary = run_sweep(study, store, executor=runner, progress=progress)
            report = build_report(store, study.name)
            paths = write_report(report, out_dir)
    finally:
        runner.close()
    rows = table_rows(report)
    verdicts = {row["schedule"]: row["verdict"] for row in rows}
    return CompareResult(report, rows, verdicts, paths, summary, db_path, study)
