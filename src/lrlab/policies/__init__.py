"""Metric-driven learning-rate policies and the driver protocol (layer 2).

A :class:`Policy` is a config value like a schedule (``lrlab.from_config({"type": "policy",
...})``); when it advances is its trigger's business (:mod:`lrlab.policies.triggers`, one class
per trigger); its state is an explicit, versioned :class:`PolicyState`. Schedules and policies
both drive a hyper-parameter through one protocol, :class:`Driver` (:func:`as_driver`), which
``lrlab.torch.Scheduler``, replays, exports and the CLI use. See ``docs/policies.md``.
"""

from lrlab.policies.driver import Driver, ScheduleDriver, as_driver, as_metric, config_of
from lrlab.policies.metrics import convergence_epoch
from lrlab.policies.policy import STATE_VERSION, Policy, PolicyState
from lrlab.policies.replay import Replay, load_metrics, replay
from lrlab.policies.triggers import (
    TRIGGERS,
    Cutoff,
    Epoch,
    Oscillation,
    Plateau,
    Trigger,
    TriggerState,
    checked,
    trigger,
)

__all__ = [
    "STATE_VERSION",
    "TRIGGERS",
    "Cutoff",
    "Driver",
    "Epoch",
    "Oscillation",
    "Plateau",
    "Policy",
    "PolicyState",
    "Replay",
    "ScheduleDriver",
    "Trigger",
    "TriggerState",
    "as_driver",
    "as_metric",
    "checked",
    "config_of",
    "convergence_epoch",
    "load_metrics",
    "replay",
    "trigger",
]
