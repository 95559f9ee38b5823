"""The LR range test (layer 4): ``range_test``, its result, the reading of the bounds.

May import ``lrlab.schedules``, ``lrlab.torch`` and ``lrlab.errors``, never ``lrlab.lab`` or
``lrlab.cli``. See docs/range-test.md.

The names are loaded on first use, so ``lrlab.finder.constants`` (what the CLI needs to build its
options) is imported without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lrlab.finder.constants import (
    BOUNDS,
    FASTAI_READINGS,
    MIN_STEPS,
    MODES,
    SIGNAL_CHOICES,
    SIGNALS,
    STOP_REASONS,
)

if TYPE_CHECKING:  # pragma: no cover
    from lrlab.finder.api import lr_ladder, range_test, repeat_range_test
    from lrlab.finder.fastai import FastaiReading
    from lrlab.finder.result import RangeTestResult
    from lrlab.finder.state import (
        StateSnapshot,
        preserved_state,
        restore_state,
        snapshot_state,
    )
    from lrlab.finder.suggest import Diagnostic, Spread, Suggestion, SuggestOptions, read_curve

_WHERE = {
    "FastaiReading": "fastai",
    "lr_ladder": "api",
    "range_test": "api",
    "repeat_range_test": "api",
    "RangeTestResult": "result",
    "StateSnapshot": "state",
    "preserved_state": "state",
    "restore_state": "state",
    "snapshot_state": "state",
    "Diagnostic": "suggest",
    "Spread": "suggest",
    "Suggestion": "suggest",
    "SuggestOptions": "suggest",
    "read_curve": "suggest",
}

__all__ = [
    "BOUNDS",
    "FASTAI_READINGS",
    "MIN_STEPS",
    "MODES",
    "SIGNALS",
    "SIGNAL_CHOICES",
    "STOP_REASONS",
    "Diagnostic",
    "FastaiReading",
    "RangeTestResult",
    "Spread",
    "StateSnapshot",
    "SuggestOptions",
    "Suggestion",
    "lr_ladder",
    "preserved_state",
    "range_test",
    "read_curve",
    "repeat_range_test",
    "restore_state",
    "snapshot_state",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lrlab.finder' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lrlab.finder.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
