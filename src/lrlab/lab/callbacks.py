"""Callbacks that pass what Lightning or the Hugging Face Trainer measures to an lrlab trial.

A trial function (``def train(trial): ...``) that trains with a framework hands one of these to
it, and every epoch's metrics reach ``trial.report(epoch, **metrics)``, hence the lab's store:

- :class:`LightningReporter` (a ``lightning.pytorch.Callback``): at the end of each training
  epoch that ran a validation, every entry of ``trainer.callback_metrics`` (what ``self.log``
  recorded, validation and training alike) as a float, reported as epoch
  ``trainer.current_epoch + 1``.
- :class:`HuggingFaceReporter` (a ``transformers.TrainerCallback``): at each ``on_evaluate``, the
  evaluation's metrics under the names the Trainer gives them (``eval_loss``, ``eval_accuracy``...;
  the prefix is kept, so a study's ``objective`` is the name the Trainer's own logs show), less
  the speed counters and the epoch; the n-th evaluation during ``trainer.train()`` is reported
  as epoch n.

Lightning and transformers are imported only when a class is first used, so ``lrlab.lab`` and
this module import without them. The classes are built on first access (a module
``__getattr__``) because they subclass the frameworks' own base classes.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Protocol

#: Entries of a Hugging Face metrics dict that are not measurements of the model: the epoch (the
#: report's own time axis), token and FLOP counters, and the speed of the evaluation loop.
HF_NOT_METRICS = frozenset({"epoch", "num_input_tokens_seen", "total_flos"})
HF_SPEED_SUFFIXES = ("_runtime", "_per_second")


class Reporter(Protocol):
    """The one part of a trial these callbacks use."""

    def report(self, epoch: int, **metrics: Any) -> Any: ...


def as_float(value: Any) -> Any:
    """A one-number value as a float: Python and NumPy numbers, one-element tensors and arrays.

    Anything else comes back unchanged, so that ``trial.report`` rejects it naming the metric.

    >>> as_float(3), as_float(2.5), as_float(True)
    (3.0, 2.5, True)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real):
        return float(value)
    size = getattr(value, "numel", None) or getattr(value, "size", None)
    count = size() if callable(size) else size
    if count == 1 and hasattr(value, "item"):
        return float(value.item())
    return value


def lightning_metrics(callback_metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``trainer.callback_metrics`` as ``name -> float`` (sorted by name, for stable reports)."""
    return {name: as_float(callback_metrics[name]) for name in sorted(callback_metrics)}


def hf_metrics(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """An ``on_evaluate`` metrics dict without its epoch, counters and speed entries.

    >>> hf_metrics({"eval_loss": 0.5, "eval_runtime": 0.1, "eval_samples_per_second": 9.0,
    ...             "eval_steps_per_second": 1.0, "epoch": 2.0, "eval_accuracy": 0.75})
    {'eval_accuracy': 0.75, 'eval_loss': 0.5}
    """
    return {
        name: as_float(value)
        for name, value in sorted((metrics or {}).items())
        if name not in HF_NOT_METRICS and not name.endswith(HF_SPEED_SUFFIXES)
    }


def _lightning_reporter() -> type:
    from lightning.pytorch.callbacks import Callback

    class LightningReporter(Callback):
        """Reports ``trainer.callback_metrics`` to ``trial`` after every validated epoch.

        The report is made from ``on_train_epoch_end``, not from the validation hooks: Lightning
        validates before the training epoch's ``on_epoch=True`` values are reduced, so only then
        are both the validation and the training metrics this epoch's. An epoch without a
        validation run (``check_val_every_n_epoch > 1``) is not reported; a fit without any
        validation reports every epoch. Values logged in the LightningModule's own
        ``on_train_epoch_end`` are not seen (Lightning calls callbacks first): log them in
        ``training_step`` / ``validation_step`` or ``on_validation_epoch_end``.
        """

        def __init__(self, trial: Reporter):
            super().__init__()
            self.trial = trial
            self.validated_epoch: int | None = None

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                self.validated_epoch = trainer.current_epoch

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            epoch = trainer.current_epoch
            if trainer.enable_validation and self.validated_epoch != epoch:
                return
            self.trial.report(epoch + 1, **lightning_metrics(trainer.callback_metrics))

    return LightningReporter


def _huggingface_reporter() -> type:
    from transformers import TrainerCallback

    class HuggingFaceReporter(TrainerCallback):
        """Reports each evaluation's metrics (``eval_loss``, ...) to ``trial`` as the next epoch.

        The n-th evaluation is epoch n: with ``eval_strategy="epoch"`` that is the training
        epoch; with ``"steps"`` it counts evaluations, evenly spaced in steps. Several
        evaluation sets (``eval_dataset={"a": ..., "b": ...}``, metrics ``eval_a_loss``...) are
        evaluated at the same step and reported as the same epoch. Only evaluations
        inside ``trainer.train()`` are reported: a final ``trainer.evaluate(test_set)`` is not
        an epoch (return its numbers from the trial function instead).
        """

        def __init__(self, trial: Reporter):
            self.trial = trial
            self.evaluations = 0
            self.training = False
            self.evaluated_step: int | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any):
            self.training = True

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any):
            self.training = False

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics=None, **kwargs: Any):
            if not self.training:
                return
            if state.global_step != self.evaluated_step:  # several eval sets: one epoch
                self.evaluations += 1
                self.evaluated_step = state.global_step
            self.trial.report(self.evaluations, **hf_metrics(metrics))

    return HuggingFaceReporter


_FACTORIES = {
    "LightningReporter": _lightning_reporter,
    "HuggingFaceReporter": _huggingface_reporter,
}
__all__ = sorted([*_FACTORIES, "as_float", "hf_metrics", "lightning_metrics"])


def __getattr__(name: str) -> Any:
    factory = _FACTORIES.get(name)
    if factory is None:
        raise AttributeError(f"module 'lrlab.lab.callbacks' has no attribute {name!r}")
    cls = factory()
    cls.__module__, cls.__qualname__ = __name__, name  # so that pickle finds it here
    globals()[name] = cls
    return cls
