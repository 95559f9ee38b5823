"""Metric-driven learning-rate policies: a frozen config value plus an explicit, versioned state.

A :class:`Policy` decides *when* to advance through its trigger (one class per trigger, in
:mod:`lrlab.policies.triggers`: ``epoch``, ``cutoff``, ``oscillation``, ``plateau``) and *what*
advancing means (pop the next value of ``values``, or multiply by ``factor``), optionally as a
multiplier on a time ``schedule``. The policy never changes; what it has seen lives in a
:class:`PolicyState`. A policy is a stateful driver (:mod:`lrlab.policies.driver`)::

    init() -> state ; value(state, step) -> float ; observe(state, metric) -> state

>>> p = Policy(trigger="oscillation", values={"type": "sequence", "kind": "seq1", "lr": 0.01})
>>> s = p.init()
>>> for loss in (1.0, 0.8, 0.9, 0.7):
...     s = p.observe(s, loss)
>>> s.pops, p.value(s, 0)
(1, 0.005)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lrlab import validate
from lrlab.errors import ConfigError, unknown_name_error
from lrlab.policies.driver import as_metric
from lrlab.policies.triggers import TRIGGERS, Trigger, TriggerState, build_trigger
from lrlab.schedules.base import Configurable, Schedule, from_config, register

STATE_VERSION = 2


@dataclass(frozen=True)
class PolicyState:
    """What a policy has seen: ``trigger`` (the trigger's own state), ``pops`` (advances so far),
    ``observations`` (finite metrics seen), ``bad_metrics`` (non-finite metrics ignored)."""

    trigger: TriggerState
    pops: int = 0
    observations: int = 0
    bad_metrics: int = 0


_COUNTS = ("pops", "observations", "bad_metrics")


def _schedule(value: Any, where: str) -> Schedule:
    if isinstance(value, Mapping):
        value = from_config(value)
    if not isinstance(value, Schedule):
        raise ConfigError(
            f"{where} must be a schedule (a dict with a 'type' key), got {validate.describe(value)}"
        )
    return value


@register("policy")
@dataclass(frozen=True)
class Policy(Configurable):
    """A learning-rate policy driven by a metric (normally the validation loss, once per epoch).

    ``trigger`` decides when to advance: a trigger name (its defaults), a
    ``{"type": name, ...}`` table, or a trigger value. Each advance ("pop") moves to the next
    value of ``values`` (a sequence config, any schedule evaluated at the pop count) or
    multiplies by ``factor``. On its own the learning rate is ``values(pops)`` or
    ``lr0 * factor ** pops``; with a time ``schedule`` it is ``schedule(t) * values(pops) /
    values(0)`` or ``schedule(t) * factor ** pops``. ``min_lr`` floors the result. A sequence
    with a ``length`` stays at its last value once it runs out. A NaN or infinite metric is
    ignored (only ``bad_metrics`` counts it).

    In a config the trigger's keys may sit next to the policy's (the flat form,
    ``{"type": "policy", "trigger": "plateau", "patience": 2, ...}``) or in the trigger's table
    (``"trigger": {"type": "plateau", "patience": 2}``); ``to_config`` writes the form it read.

    >>> p = Policy(trigger="cutoff", values={"type": "sequence", "kind": "seq3", "lr": 0.01})
    >>> Policy(**{k: v for k, v in p.to_config().items() if k != "type"}) == p
    True
    """

    trigger: Trigger
    values: Schedule | None = None
    factor: float | None = None
    lr0: float | None = None
    schedule: Schedule | None = None
    min_lr: float | None = None

    _v0: float = dataclasses.field(init=False, repr=False, compare=False, default=1.0)
    _flat: bool = dataclasses.field(init=False, repr=False, compare=False, default=True)

    stateful: ClassVar[bool] = True
    state_version: ClassVar[int] = STATE_VERSION

    def __post_init__(self) -> None:
        flat = not isinstance(self.trigger, Mapping)
        object.__setattr__(self, "trigger", build_trigger(self.trigger, "policy.trigger"))
        object.__setattr__(self, "_flat", flat)
        self._check_advance()
        if self.min_lr is not None:
            object.__setattr__(self, "min_lr", validate.real(self.min_lr, "policy.min_lr", lo=0))

    def _check_advance(self) -> None:
        """``values`` xor ``factor``; ``lr0`` exactly when ``factor`` has no ``schedule``."""
        if (self.values is None) == (self.factor is None):
            raise ConfigError(
                "policy: give exactly one of 'values' (a sequence config such as "
                '{"type": "sequence", "kind": "seq4", "lr": 0.01}) or \'factor\' (a number in (0, 1])'
            )
        for name in ("values", "schedule"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _schedule(getattr(self, name), f"policy.{name}"))
        if self.factor is not None:
            factor = validate.real(self.factor, "policy.factor", lo=0, lo_open=True, hi=1)
            object.__setattr__(self, "factor", factor)
        if self.lr0 is not None:
            object.__setattr__(self, "lr0", validate.real(self.lr0, "policy.lr0", lo=0))
        if self.factor is not None and self.schedule is None and self.lr0 is None:
            raise ConfigError(
                "policy.lr0 is required with 'factor' and no 'schedule' (lr = lr0 * factor ** pops)"
            )
        if self.lr0 is not None and (self.values is not None or self.schedule is not None):
            raise ConfigError(
                "policy.lr0 is only for 'factor' without a 'schedule'; the starting learning rate "
                "comes from " + ("'values'" if self.values is not None else "'schedule'")
            )
        if self.values is not None and self.schedule is not None:
            v0 = self.values(0)
            if not (v0 > 0 and math.isfinite(v0)):
                raise ConfigError(
                    f"policy.values must start above 0 to multiply a schedule (values(0) = {v0!r})"
                )
            object.__setattr__(self, "_v0", v0)

    # ------------------------------------------------------------------ config
    @classmethod
    def from_config_dict(cls, config: Mapping[str, Any]) -> Policy:
        """Build from a config: the trigger's keys flat beside the policy's, or in its table."""
        own = {f.name for f in dataclasses.fields(cls) if f.init}
        if "trigger" not in config:
            raise ConfigError(
                f"policy is missing required key 'trigger'; allowed: {', '.join(TRIGGERS)}"
            )
        extra = {k: v for k, v in config.items() if k not in own and k != "type"}
        trigger = config["trigger"]
        trigger_keys = {f.name for t in TRIGGERS.values() for f in t._fields()}
        for key in extra:
            if key not in trigger_keys:
                raise unknown_name_error("key for policy", key, sorted(own | trigger_keys))
            if isinstance(trigger, Mapping):
                raise ConfigError(
                    f"policy.{key}: the trigger is a table, so its keys go in it: "
                    f'"trigger": {{"type": ..., "{key}": ...}}'
                )
        if isinstance(trigger, str):
            name = validate.choice(trigger, "policy.trigger", TRIGGERS)
            trigger = TRIGGERS[name].from_keys(extra, "policy")
        kwargs = {k: v for k, v in config.items() if k in own and k != "trigger"}
        return cls(trigger=trigger, **kwargs)

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        keys = self.trigger.to_config()
        if self._flat:
            config["trigger"] = self.trigger.type_name
            config.update(keys)
        else:
            config["trigger"] = {"type": self.trigger.type_name, **keys}
        return config

    @classmethod
    def describe_extra(cls) -> dict[str, list[str]]:
        """For ``lrlab schedules``: the triggers and the keys each one takes."""
        return {
            "triggers": list(TRIGGERS),
            "trigger keys": [t.describe() for t in TRIGGERS.values()],
        }

    # ------------------------------------------------------------------ the driver protocol
    def init(self) -> PolicyState:
        return PolicyState(self.trigger.init())

    def observe(self, state: PolicyState, metric: float) -> PolicyState:
        """The state after seeing ``metric``. Pure: ``state`` and ``self`` are unchanged.

        A NaN or infinite metric is not an observation: only ``bad_metrics`` grows.
        """
        m = as_metric(metric)
        if not math.isfinite(m):
            return dataclasses.replace(state, bad_metrics=state.bad_metrics + 1)
        trigger_state, fired = self.trigger.observe(state.trigger, m)
        pops = state.pops
        if fired and self.trigger.accepts(self.level(pops) - self.level(pops + 1)):
            pops += 1
        return PolicyState(trigger_state, pops, state.observations + 1, state.bad_metrics)

    def advances(self, state: PolicyState) -> int:
        return state.pops

    def multiplier(self, pops: int) -> float:
        """What ``pops`` advances do: ``values(pops) / values(0)`` or ``factor ** pops``."""
        if self.values is not None:
            return self.values(pops) / self._v0 if self.schedule is not None else self.values(pops)
        return self.factor**pops  # type: ignore[operator]

    def level(self, pops: int) -> float:
        """The rate after ``pops`` advances without a schedule (floored at ``min_lr``), or the
        multiplier of the schedule; ``eps`` compares two of these."""
        if self.schedule is not None:
            return self.multiplier(pops)
        value = self.values(pops) if self.values is not None else self.lr0 * self.factor**pops  # type: ignore[operator]
        return value if self.min_lr is None or value >= self.min_lr else self.min_lr

    def value(self, state: PolicyState, step: int) -> float:
        """The learning rate at step ``step`` given ``state``."""
        if self.schedule is None:
            return float(self.level(state.pops))
        value = self.schedule(step) * self.multiplier(state.pops)
        if self.min_lr is not None and value < self.min_lr:
            value = self.min_lr
        return float(value)

    # ------------------------------------------------------------------ state (de)serialisation
    def state_to_dict(self, state: PolicyState) -> dict[str, Any]:
        """Plain JSON types, versioned; safe for ``torch.load(weights_only=True)``."""
        counts = {name: getattr(state, name) for name in _COUNTS}
        trigger = {"type": self.trigger.type_name, **state.trigger.to_dict()}
        return {"version": STATE_VERSION, **counts, "trigger": trigger}

    def state_from_dict(self, d: Any, where: str = "policy state") -> PolicyState:
        """The state saved by :meth:`state_to_dict`, validated as a whole (one-line errors)."""
        if d is None:
            raise ConfigError(
                f"{where}: missing (this driver is a {self.trigger.type_name!r} policy)"
            )
        d = validate.mapping(d, where)
        if d.get("version") != STATE_VERSION:
            raise ConfigError(
                f"{where}: version {d.get('version')!r} not supported (this lrlab reads {STATE_VERSION})"
            )
        validate.known_keys(
            d, where, {"version", "trigger", *_COUNTS}, required=("trigger", *_COUNTS)
        )
        saved = validate.mapping(d["trigger"], f"{where}.trigger")
        if saved.get("type") != self.trigger.type_name:
            raise ConfigError(
                f"{where}: saved by a {saved.get('type')!r} policy, cannot load into a "
                f"{self.trigger.type_name!r} policy"
            )
        trigger = self.trigger.State.from_dict(
            {k: v for k, v in saved.items() if k != "type"}, f"{where}.trigger"
        )
        counts = {n: validate.integer(d[n], validate.field(where, n), lo=0) for n in _COUNTS}
        return PolicyState(trigger, **counts)
