"""Replay a recorded metric history through a policy: what would it have done to a past run?"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lrlab import validate
from lrlab.errors import ConfigError
from lrlab.policies.driver import ScheduleDriver, advances, as_driver, as_metric


@dataclass(frozen=True)
class Replay:
    """The result of :func:`replay`.

    ``lrs[t]``: the learning rate of step ``t`` (what ``lrlab.torch.Scheduler`` applies after
    ``t`` calls of ``step()`` and ``floor(t / steps_per_epoch)`` calls of ``step(metric)``).
    ``pop_epochs``: 0-based indices into ``metrics`` of the observations that advanced the
    policy, one entry per pop (the new rate applies from step ``(i + 1) * steps_per_epoch``).
    ``final_lr``: the rate after the decision on the last metric, at step
    ``len(metrics) * steps_per_epoch``. ``state``: the policy state after every metric
    (``None`` for a plain schedule).
    """

    lrs: list[float]
    pop_epochs: list[int]
    final_lr: float
    state: object = None

    @property
    def pops(self) -> int:
        return len(self.pop_epochs)


def replay(
    policy, metrics: Sequence[float], steps_per_epoch: int = 1, steps: int | None = None
) -> Replay:
    """Feed ``metrics`` (one value per epoch) to ``policy`` as a training loop would.

    Each epoch runs ``steps_per_epoch`` steps at the current rate, then its metric is observed.
    ``steps`` (default ``len(metrics) * steps_per_epoch``) may run past the last metric: later
    steps use the final state. Anything :func:`~lrlab.policies.as_driver` takes is accepted; a
    plain schedule ignores the metrics.

    >>> p = {"type": "policy", "trigger": "epoch", "lr0": 1.0, "factor": 0.5}
    >>> r = replay(p, [3.0, 2.0], steps_per_epoch=2)
    >>> r.lrs, r.pop_epochs, r.final_lr
    ([1.0, 1.0, 0.5, 0.5], [0, 1], 0.25)
    """
    driver = as_driver(policy, "replay")
    spe = validate.integer(steps_per_epoch, "--steps-per-epoch", lo=1)
    if isinstance(metrics, str | bytes | Mapping):  # not a list of numbers, though iterable
        raise ConfigError("metrics must be a list of numbers (one per epoch)")
    try:
        values = [as_metric(m) for m in metrics]
    except (ConfigError, TypeError):
        raise ConfigError("metrics must be a list of numbers (one per epoch)") from None
    end = len(values) * spe
    total = end if steps is None else validate.integer(steps, "--steps", lo=0)
    if isinstance(driver, ScheduleDriver):  # nothing to observe: one vectorised evaluation
        curve = [float(v) for v in driver.schedule.values(total)] if total else []
        return Replay(curve, [], driver.value(None, end), None)
    state = driver.init()
    lrs: list[float] = []
    pop_epochs: list[int] = []
    for epoch, metric in enumerate(values):
        lrs.extend(
            driver.value(state, t) for t in range(epoch * spe, min((epoch + 1) * spe, total))
        )
        before = advances(driver, state)
        state = driver.observe(state, metric)
        pop_epochs.extend([epoch] * (advances(driver, state) - before))
    lrs.extend(driver.value(state, t) for t in range(len(lrs), total))
    return Replay(lrs, pop_epochs, driver.value(state, end), state)


def load_metrics(source: str) -> list[float]:
    """A metric history from a JSON file (or inline JSON): a list of numbers, one per epoch.

    ``null`` entries become NaN (ignored by every policy). A dict with exactly one list value, or
    a ``valid_loss`` / ``val_loss`` key, is accepted too (the authors' recorded runs).
    """
    import json
    from pathlib import Path

    text = str(source).strip()
    if text.startswith(("[", "{")):
        raw = text
    else:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(
                f"--metrics {text!r}: no such file (expected a JSON list, one value per epoch)"
            )
        raw = path.read_text()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--metrics {text!r}: not valid JSON: {exc}") from None
    if isinstance(data, dict):
        for key in ("valid_loss", "val_loss"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise ConfigError(
                    f"--metrics {text!r}: expected a JSON list of numbers, got an object"
                )
            data = lists[0]
    if not isinstance(data, list) or not all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in data
    ):
        raise ConfigError(f"--metrics {text!r}: expected a JSON list of numbers (one per epoch)")
    return [math.nan if v is None else float(v) for v in data]
