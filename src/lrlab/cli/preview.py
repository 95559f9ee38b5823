"""A study's schedules before anything trains: ``STUDY:SCHEDULE`` sources and the preview plot.

``lrlab lr study.toml:ralr --steps N`` prints one schedule of a study with its placeholders
resolved (for the study's first seed); :func:`preview_study` plots every schedule of a study on
one figure, over the study's epochs, training nothing (``lrlab compare STUDY --preview``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lrlab.errors import ConfigError, did_you_mean

#: ``STUDY:SCHEDULE``: a .toml path or a built-in study name, then a schedule name
_STUDY_SOURCE = re.compile(r"^(?P<study>.+?):(?P<name>[A-Za-z0-9_+\-.]+)$")


def split_study_source(source: str | os.PathLike) -> tuple[str, str] | None:
    """``(study, schedule)`` when ``source`` reads ``STUDY:SCHEDULE`` with STUDY a .toml file or
    a built-in study; ``None`` otherwise (inline JSON, a config file)."""
    text = os.fspath(source).strip()
    match = _STUDY_SOURCE.match(text)
    if text.startswith("{") or match is None:
        return None
    study = match["study"]
    if study.endswith(".toml") or Path(study).is_file():
        return study, match["name"]
    from lrlab.lab.study import builtin_studies

    return (study, match["name"]) if study in builtin_studies() else None


def _load(study):
    from lrlab.lab.study import Study, load_study

    return study if isinstance(study, Study) else load_study(study)


def study_schedule(study, name: str, seed: int | None = None) -> tuple[dict, int]:
    """One schedule of a study (a :class:`~lrlab.lab.study.Study`, a path or a built-in name)
    with placeholders resolved for ``seed`` (default: the first seed), and its steps per epoch."""
    config, spe, _ = study_schedule_with_hyperparams(study, name, seed)
    return config, spe


def study_schedule_with_hyperparams(
    study, name: str, seed: int | None = None
) -> tuple[dict, int, dict]:
    """:func:`study_schedule` and the schedule's ``hyperparams`` (key -> resolved config)."""
    study = _load(study)
    if name not in study.schedules:
        names = list(study.schedules)
        raise ConfigError(
            f"study {study.name!r} has no schedule {name!r}{did_you_mean(name, names)}; "
            f"its schedules: {', '.join(names)}"
        )
    seed = study.seeds[0] if seed is None else seed
    spe = study.variables(study.schedules[name], seed)["steps_per_epoch"]
    return study.resolved_config(name, seed), spe, study.resolved_hyperparams(name, seed)


def _rates(config: dict, steps: int):
    """The rates of a resolved config; a policy shows its rate before its first advance."""
    import numpy as np

    from lrlab.policies import as_driver
    from lrlab.schedules import from_config

    driver = as_driver(config)
    if driver.stateful:
        state = driver.init()
        return np.array([driver.value(state, t) for t in range(steps)]), True
    return from_config(config).values(steps), False


def study_curves(study) -> tuple[dict, dict]:
    """``(curves, x)``: every schedule's rates over the study's epochs and their x values in
    epochs (a schedule stepped per iteration has ``iterations_per_epoch`` points per epoch)."""
    panels, xs = study_panels(study)
    return panels["learning rate"], xs


def study_panels(study) -> tuple[dict, dict]:
    """``(panels, x)``: :func:`study_curves` as the panel ``"learning rate"``, plus one panel
    per scheduled hyper-parameter (``momentum``, ...) with the curves of the schedules that
    drive it; a curve's x values are its label's in ``x``."""
    import numpy as np

    study = _load(study)
    panels: dict[str, dict] = {"learning rate": {}}
    xs = {}
    for name in study.schedules:
        config, spe, hyperparams = study_schedule_with_hyperparams(study, name)
        steps = study.epochs * spe
        values, is_policy = _rates(config, steps)
        label = f"{name} (policy, until its first advance)" if is_policy else name
        panels["learning rate"][label] = values
        for key, sub in hyperparams.items():
            panels.setdefault(key, {})[label] = _rates(sub, steps)[0]
        xs[label] = np.arange(steps) / spe
    return panels, xs


def preview_study(study, path: str | os.PathLike, *, log: bool = False) -> Path:
    """Plot every schedule of ``study`` (a Study, a .toml path or a built-in name) with its
    placeholders resolved for the first seed, against epochs, and save it to ``path`` (PNG, PDF
    or SVG after the suffix); a scheduled hyper-parameter (momentum, ...) gets a panel of its
    own below. Trains nothing; a metric-driven policy is drawn at the rate it has
    until it first advances (what it does then depends on the run). Returns the path."""
    from lrlab.cli.schedule_cmds import plot_panels

    study = _load(study)
    panels, xs = study_panels(study)
    title = (
        f"study {study.name}: {len(study.schedules)} schedules, {study.epochs} epochs, "
        f"{study.iterations_per_epoch} iterations per epoch (seed {study.seeds[0]})"
    )
    return plot_panels(panels, path, title=title, log=log, xlabel="epoch", x=xs)
