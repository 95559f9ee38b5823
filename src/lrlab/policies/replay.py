"""Replay a recorded metric history through a policy: what would it have done to a past run?"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lrlab.errors import ConfigError
from lrlab.schedules.base import Schedule, from_config


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


def _is_policy(obj) -> bool:
    return hasattr(obj, "observe") and hasattr(obj, "initial_state")


def replay(
    policy, metrics: Sequence[float], steps_per_epoch: int = 1, steps: int | None = None
) -> Replay:
    """Feed ``metrics`` (one value per epoch) to ``policy`` as a training loop would.

    Each epoch runs ``steps_per_epoch`` steps at the current rate, then its metric is observed.
    ``steps`` (default ``len(metrics) * steps_per_epoch``) may run past the last metric: later
    steps use the final state. A plain schedule (or its config) is accepted and ignores the
    metrics.

    >>> p = {"type": "policy", "trigger": "epoch", "lr0": 1.0, "factor": 0.5}
    >>> r = replay(p, [3.0, 2.0], steps_per_epoch=2)
    >>> r.lrs, r.pop_epochs, r.final_lr
    ([1.0, 1.0, 0.5, 0.5], [0, 1], 0.25)
    """
    if isinstance(policy, Mapping):
        policy = from_config(policy)
    if not (_is_policy(policy) or isinstance(policy, Schedule)):
        raise ConfigError(f"replay: expected a policy or schedule (or its config), got {policy!r}")
    if (
        isinstance(steps_per_epoch, bool)
        or not isinstance(steps_per_epoch, int)
        or steps_per_epoch < 1
    ):
        raise ConfigError(f"--steps-per-epoch must be an integer >= 1, got {steps_per_epoch!r}")
    try:
        values = [float(m) for m in metrics]
    except (TypeError, ValueError):
        raise ConfigError("metrics must be a list of numbers (one per epoch)") from None
    total = len(values) * steps_per_epoch if steps is None else steps
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ConfigError(f"--steps must be an integer >= 0, got {steps!r}")
    if not _is_policy(policy):
        lrs = [float(v) for v in policy.values(total)] if total else []
        return Replay(lrs, [], float(policy(len(values) * steps_per_epoch)), None)
    state = policy.initial_state()
    lrs: list[float] = []
    pop_epochs: list[int] = []
    for epoch, metric in enumerate(values):
        start = epoch * steps_per_epoch
        for t in range(start, min(start + steps_per_epoch, total)):
            lrs.append(policy.lr(t, state))
        before = state.pops
        state = policy.observe(state, metric)
        pop_epochs.extend([epoch] * (state.pops - before))
    lrs.extend(policy.lr(t, state) for t in range(len(lrs), total))
    return Replay(lrs, pop_epochs, policy.lr(len(values) * steps_per_epoch, state), state)


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
