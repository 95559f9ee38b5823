"""Metric-driven learning-rate policies (layer 2): update by epoch, cutoff, oscillation, plateau.

A :class:`Policy` is a config value like a schedule (``lrlab.from_config({"type": "policy",
...})``); its state is an explicit, versioned :class:`PolicyState`. ``lrlab.torch.Scheduler``
drives one: ``step()`` advances time, ``step(metric)`` feeds a metric. See ``docs/policies.md``.
"""

from lrlab.policies.metrics import convergence_epoch
from lrlab.policies.policy import (
    PLATEAU_MODES,
    STATE_VERSION,
    THRESHOLD_MODES,
    TRIGGER_KEYS,
    TRIGGER_RULES,
    TRIGGERS,
    Policy,
    PolicyState,
)
from lrlab.policies.replay import Replay, load_metrics, replay

__all__ = [
    "PLATEAU_MODES",
    "STATE_VERSION",
    "THRESHOLD_MODES",
    "TRIGGERS",
    "TRIGGER_KEYS",
    "TRIGGER_RULES",
    "Policy",
    "PolicyState",
    "Replay",
    "convergence_epoch",
    "load_metrics",
    "replay",
]
