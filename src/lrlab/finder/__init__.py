"""The LR range test (layer 4): ``range_test``, its result, the reading of the bounds.

May import ``lrlab.schedules``, ``lrlab.torch`` and ``lrlab.errors``, never ``lrlab.lab`` or
``lrlab.cli``. See docs/range-test.md.
"""

from lrlab.finder.range_test import (
    MIN_STEPS,
    MODES,
    STOP_REASONS,
    RangeTestResult,
    lr_ladder,
    range_test,
    repeat_range_test,
)
from lrlab.finder.state import StateSnapshot, preserved_state, restore_state, snapshot_state
from lrlab.finder.suggest import Diagnostic, Spread, Suggestion, SuggestOptions, read_curve

__all__ = [
    "MIN_STEPS",
    "MODES",
    "STOP_REASONS",
    "Diagnostic",
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
