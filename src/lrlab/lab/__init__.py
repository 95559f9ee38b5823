"""The lab: tasks, models, the trainer, the user's trial functions, studies, sweeps, the
results store and reports.

Kept light: importing ``lrlab.lab`` (or ``lrlab.lab.store``, ``lrlab.lab.contract``) does not
import torch. The public names below are loaded on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # tasks
    "Task": "tasks",
    "TaskInfo": "tasks",
    "TASKS": "tasks",
    "load_task": "tasks",
    "make_task": "tasks",
    # models
    "MODELS": "models",
    "build_model": "models",
    "check_model": "models",
    # the data contract (torch-free)
    "TrialSpec": "contract",
    "EpochRecord": "contract",
    "TrialResult": "contract",
    "MetricsResult": "contract",
    "TrialStatus": "contract",
    "Objective": "contract",
    "StoredTrial": "contract",
    # the user's side
    "Trial": "trial",
    "compare": "api",
    "CompareResult": "api",
    # trainer
    "train_trial": "trainer",
    "evaluate": "trainer",
    "iterations_per_epoch": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lrlab.lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lrlab.lab.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
