"""The range test's names, in one place (no torch, no NumPy: the CLI imports them to build its
options without loading either).

>>> SIGNAL_CHOICES
('auto', 'val_acc', 'train_acc', 'val_loss', 'loss')
>>> signal_kind("val_acc"), signal_kind("val_loss")
('accuracy', 'loss')
"""

from __future__ import annotations

__all__ = [
    "BOUNDS",
    "FASTAI_READINGS",
    "MAX_REPEATS",
    "MAX_STEPS",
    "MIN_STEPS",
    "MODES",
    "SIGNALS",
    "SIGNAL_CHOICES",
    "STOP_REASONS",
    "signal_kind",
]

#: The ladders of rates: evenly spaced in ``lr`` (Smith's) or in ``log lr``.
MODES = ("linear", "exp")
#: Fewer optimizer steps than this leave nothing to read.
MIN_STEPS = 10
#: More than this is no longer a short test (and the ladder alone would fill memory).
MAX_STEPS = 1_000_000
#: Runs of one repeated test.
MAX_REPEATS = 1000
#: Why a run ended.
STOP_REASONS = ("end", "diverged", "nan", "end_of_data")
#: The curves the bounds can be read from, in the order ``signal="auto"`` prefers them.
SIGNALS = ("val_acc", "train_acc", "val_loss", "loss")
#: What ``suggest(signal=...)`` and ``lrlab find --signal`` accept.
SIGNAL_CHOICES = ("auto", *SIGNALS)
#: lrlab's readings: the cyclic bounds and one rate for a fixed schedule.
BOUNDS = ("base_lr", "max_lr", "lr")
#: fastai's ``lr_find`` suggestions, offered beside them (see :mod:`lrlab.finder.fastai`).
FASTAI_READINGS = ("valley", "steep", "minimum")


def signal_kind(signal: str) -> str:
    """``"accuracy"`` for an accuracy curve (higher is better), ``"loss"`` otherwise."""
    return "accuracy" if signal.endswith("acc") else "loss"
