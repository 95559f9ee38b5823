"""Metric-driven learning-rate policies: a frozen config value plus an explicit, versioned state.

A :class:`Policy` decides *when* to advance (its ``trigger``: ``epoch``, ``cutoff``,
``oscillation`` or ``plateau``, METHODS.md section 3 and ``ReduceLROnPlateau``) and *what*
advancing means (pop the next value of ``values``, or multiply by ``factor``), optionally as a
multiplier on a time ``schedule``. The policy object never changes; what it has seen lives in a
:class:`PolicyState`, and :meth:`Policy.observe` is a pure transition ``(state, metric) -> state``.

>>> p = Policy(trigger="oscillation", values={"type": "sequence", "kind": "seq1", "lr": 0.01})
>>> s = p.initial_state()
>>> for loss in (1.0, 0.8, 0.9, 0.7):
...     s = p.observe(s, loss)
>>> s.pops, p.lr(0, s)
(1, 0.005)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lrlab.errors import ConfigError
from lrlab.schedules.base import (
    Configurable,
    Schedule,
    check_choice,
    check_float,
    check_int,
    check_schedule,
    register,
)

TRIGGERS = ("epoch", "cutoff", "oscillation", "plateau")
PLATEAU_MODES = ("min", "max")
THRESHOLD_MODES = ("rel", "abs")
STATE_VERSION = 1

# the keys each trigger understands, with their effective defaults (config value None = default)
TRIGGER_KEYS: dict[str, dict[str, Any]] = {
    "epoch": {},
    "cutoff": {"rate": 0.01, "cutoff": None, "shrink": 0.2},
    "oscillation": {"margin": 0.0, "patience": 0, "authors_bug": False},
    "plateau": {
        "mode": "min",
        "threshold": 1e-4,
        "threshold_mode": "rel",
        "patience": 10,
        "cooldown": 0,
    },
}
_ALL_TRIGGER_KEYS = sorted({k for keys in TRIGGER_KEYS.values() for k in keys})

TRIGGER_RULES = {
    "epoch": "advance at every (finite) observation",
    "cutoff": "advance when |v_t - v_(t-1)| < c, then c *= shrink; c0 = cutoff, or rate * |v_1|",
    "oscillation": "advance when v_t > v_(t-1) + margin for more than `patience` observations in a row",
    "plateau": "ReduceLROnPlateau: advance after more than `patience` observations without an "
    "improvement beyond `threshold` (rel: threshold * |best|), then wait `cooldown`",
}


@dataclass(frozen=True)
class PolicyState:
    """What a policy has seen; plain values only (see :meth:`Policy.state_to_dict`).

    ``pops``: how many times the policy advanced. ``observations``: finite metrics seen.
    ``bad_metrics``: non-finite metrics ignored. ``last``: the previous finite metric (cutoff,
    oscillation). ``cutoff``: the current cutoff ``c``. ``best``: plateau's best metric.
    ``count``: plateau's epochs without improvement / oscillation's consecutive rises.
    ``cooldown``: plateau's remaining cooldown observations.
    """

    pops: int = 0
    observations: int = 0
    bad_metrics: int = 0
    last: float | None = None
    cutoff: float | None = None
    best: float | None = None
    count: int = 0
    cooldown: int = 0


_STATE_INTS = ("pops", "observations", "bad_metrics", "count", "cooldown")
_STATE_FLOATS = ("last", "cutoff", "best")


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@register("policy")
@dataclass(frozen=True)
class Policy(Configurable):
    """A learning-rate policy driven by a metric (normally the validation loss, once per epoch).

    ``trigger`` decides when to advance (``epoch``, ``cutoff``, ``oscillation``, ``plateau``);
    each advance ("pop") moves to the next value of ``values`` (a sequence config, any schedule
    evaluated at the pop count) or multiplies by ``factor``. On its own the learning rate is
    ``values(pops)`` or ``lr0 * factor ** pops``; with a time ``schedule`` it is
    ``schedule(t) * values(pops) / values(0)`` or ``schedule(t) * factor ** pops``. ``min_lr``
    floors the result. A sequence with a ``length`` stays at its last value once it runs out.
    A NaN or infinite metric is ignored (only ``bad_metrics`` counts it).

    >>> p = Policy(trigger="cutoff", values={"type": "sequence", "kind": "seq3", "lr": 0.01})
    >>> Policy(**{k: v for k, v in p.to_config().items() if k != "type"}) == p
    True
    """

    trigger: str
    values: Schedule | None = None
    factor: float | None = None
    lr0: float | None = None
    schedule: Schedule | None = None
    min_lr: float | None = None
    # cutoff
    rate: float | None = None
    cutoff: float | None = None
    shrink: float | None = None
    # oscillation
    margin: float | None = None
    authors_bug: bool | None = None
    # oscillation and plateau
    patience: int | None = None
    # plateau
    mode: str | None = None
    threshold: float | None = None
    threshold_mode: str | None = None
    cooldown: int | None = None

    # effective values of the trigger keys (defaults filled in); not part of the config
    _opts: dict = field(init=False, repr=False, compare=False, hash=False, default=None)
    _v0: float = field(init=False, repr=False, compare=False, hash=False, default=1.0)

    state_version: ClassVar[int] = STATE_VERSION

    def __post_init__(self):
        check_choice(self, "trigger", TRIGGERS)
        trigger = self.trigger
        allowed = TRIGGER_KEYS[trigger]
        for key in _ALL_TRIGGER_KEYS:
            if getattr(self, key) is not None and key not in allowed:
                users = [t for t, keys in TRIGGER_KEYS.items() if key in keys]
                raise ConfigError(
                    f"policy.{key} applies only to trigger {' or '.join(map(repr, users))}, "
                    f"not {trigger!r}; keys for {trigger!r}: {', '.join(allowed) or 'none'}"
                )
        # what advancing means
        if (self.values is None) == (self.factor is None):
            raise ConfigError(
                "policy: give exactly one of 'values' (a sequence config such as "
                '{"type": "sequence", "kind": "seq4", "lr": 0.01}) or \'factor\' (a number in (0, 1])'
            )
        if self.values is not None:
            check_schedule(self, "values")
        check_float(self, "factor", lo=0, lo_open=True, hi=1, allow_none=True)
        if self.schedule is not None:
            check_schedule(self, "schedule")
        check_float(self, "lr0", lo=0, allow_none=True)
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
        check_float(self, "min_lr", lo=0, allow_none=True)
        # trigger keys
        check_float(self, "rate", lo=0, lo_open=True, allow_none=True)
        check_float(self, "cutoff", lo=0, lo_open=True, allow_none=True)
        if self.rate is not None and self.cutoff is not None:
            raise ConfigError(
                "policy: give 'rate' (c0 = rate * |v_1|) or 'cutoff' (absolute c0), not both"
            )
        check_float(self, "shrink", lo=0, lo_open=True, hi=1, allow_none=True)
        check_float(self, "margin", lo=0, allow_none=True)
        if self.authors_bug is not None and not isinstance(self.authors_bug, bool):
            raise ConfigError(f"policy.authors_bug must be true or false, got {self.authors_bug!r}")
        check_int(self, "patience", lo=0, allow_none=True)
        if self.mode is not None:
            check_choice(self, "mode", PLATEAU_MODES)
        check_float(self, "threshold", lo=0, allow_none=True)
        if self.threshold_mode is not None:
            check_choice(self, "threshold_mode", THRESHOLD_MODES)
        check_int(self, "cooldown", lo=0, allow_none=True)
        opts = {
            k: (default if getattr(self, k) is None else getattr(self, k))
            for k, default in allowed.items()
        }
        object.__setattr__(self, "_opts", opts)

    # ------------------------------------------------------------------ description
    @classmethod
    def describe_extra(cls) -> dict[str, list[str]]:
        """For ``lrlab schedules``: the triggers and the keys each one takes."""
        keys = []
        for trigger, options in TRIGGER_KEYS.items():
            opts = " ".join(f"{k}={v!r}" for k, v in options.items()) or "(no keys)"
            keys.append(f"{trigger}: {opts}")
        return {"triggers": list(TRIGGERS), "trigger keys": keys}

    def option(self, key: str):
        """The effective value of a trigger key (its default when the config leaves it out)."""
        return self._opts[key]

    # ------------------------------------------------------------------ the policy protocol
    def initial_state(self) -> PolicyState:
        return PolicyState()

    def observe(self, state: PolicyState, metric: float) -> PolicyState:
        """The state after seeing ``metric``. Pure: ``state`` and ``self`` are unchanged.

        A NaN or infinite metric is not an observation: only ``bad_metrics`` grows.
        """
        m = float(metric)
        if not math.isfinite(m):
            return dataclasses.replace(state, bad_metrics=state.bad_metrics + 1)
        return _TRANSITIONS[self.trigger](self, state, m)

    def _observe_epoch(self, state: PolicyState, m: float) -> PolicyState:
        return dataclasses.replace(
            state, observations=state.observations + 1, pops=state.pops + 1, last=m
        )

    def _observe_cutoff(self, state: PolicyState, m: float) -> PolicyState:
        o, seen = self._opts, state.observations + 1
        if state.last is None:  # the first loss only sets c0
            c0 = o["cutoff"] if o["cutoff"] is not None else o["rate"] * abs(m)
            return dataclasses.replace(state, observations=seen, last=m, cutoff=c0)
        pops, c = state.pops, state.cutoff
        if abs(m - state.last) < c:
            pops, c = pops + 1, c * o["shrink"]
        return dataclasses.replace(state, observations=seen, last=m, cutoff=c, pops=pops)

    def _observe_oscillation(self, state: PolicyState, m: float) -> PolicyState:
        o, seen = self._opts, state.observations + 1
        previous = state.last
        if previous is None and o["authors_bug"]:
            previous = 0.0  # the authors' code compared epoch 1 with a padded 0.0
        if previous is None:
            return dataclasses.replace(state, observations=seen, last=m)
        rises = state.count + 1 if m > previous + o["margin"] else 0
        pops = state.pops
        if rises > o["patience"]:
            pops, rises = pops + 1, 0
        return dataclasses.replace(state, observations=seen, last=m, count=rises, pops=pops)

    def _observe_plateau(self, state: PolicyState, m: float) -> PolicyState:
        """torch's ``ReduceLROnPlateau`` rule, with a relative threshold that is sign-correct."""
        o = self._opts
        best, bad = state.best, state.count
        if best is None or self._improves(m, best):
            best, bad = m, 0
        else:
            bad += 1
        cooldown = state.cooldown
        if cooldown > 0:
            cooldown, bad = cooldown - 1, 0
        pops = state.pops
        if bad > o["patience"]:
            pops, cooldown, bad = pops + 1, o["cooldown"], 0
        return dataclasses.replace(
            state,
            observations=state.observations + 1,
            last=m,
            best=best,
            count=bad,
            cooldown=cooldown,
            pops=pops,
        )

    def _improves(self, m: float, best: float) -> bool:
        o = self._opts
        step = o["threshold"] * abs(best) if o["threshold_mode"] == "rel" else o["threshold"]
        return m < best - step if o["mode"] == "min" else m > best + step

    def multiplier(self, pops: int) -> float:
        """What ``pops`` advances do: ``values(pops) / values(0)`` or ``factor ** pops``."""
        if self.values is not None:
            return self.values(pops) / self._v0 if self.schedule is not None else self.values(pops)
        return self.factor**pops

    def lr(self, t: int, state: PolicyState) -> float:
        """The learning rate at step ``t`` given ``state``."""
        pops = state.pops
        if self.schedule is not None:
            value = self.schedule(t) * self.multiplier(pops)
        elif self.values is not None:
            value = self.values(pops)
        else:
            value = self.lr0 * self.factor**pops
        if self.min_lr is not None and value < self.min_lr:
            value = self.min_lr
        return float(value)

    # ------------------------------------------------------------------ state (de)serialisation
    def state_to_dict(self, state: PolicyState) -> dict[str, Any]:
        """Plain JSON types, with ``version`` and ``trigger``; safe for ``torch.load(weights_only=True)``."""
        d: dict[str, Any] = {"version": STATE_VERSION, "trigger": self.trigger}
        for f in dataclasses.fields(PolicyState):
            d[f.name] = getattr(state, f.name)
        return d

    def state_from_dict(self, d: dict[str, Any]) -> PolicyState:
        if not isinstance(d, dict):
            raise ConfigError(f"policy state must be a dict, got {type(d).__name__}")
        if d.get("version") != STATE_VERSION:
            raise ConfigError(
                f"policy state: version {d.get('version')!r} not supported (this lrlab reads {STATE_VERSION})"
            )
        if d.get("trigger") != self.trigger:
            raise ConfigError(
                f"policy state: saved by a {d.get('trigger')!r} policy, cannot load into a {self.trigger!r} policy"
            )
        unknown = (
            set(d) - {"version", "trigger"} - {f.name for f in dataclasses.fields(PolicyState)}
        )
        if unknown:
            raise ConfigError(
                f"policy state: unknown key(s) {', '.join(sorted(map(repr, unknown)))}"
            )
        kwargs: dict[str, Any] = {}
        for name in _STATE_INTS:
            value = d.get(name, 0)
            if not _is_real(value) or not float(value).is_integer() or value < 0:
                raise ConfigError(f"policy state: {name} must be an integer >= 0, got {value!r}")
            kwargs[name] = int(value)
        for name in _STATE_FLOATS:
            value = d.get(name)
            if value is not None and not _is_real(value):
                raise ConfigError(f"policy state: {name} must be a number or null, got {value!r}")
            kwargs[name] = None if value is None else float(value)
        return PolicyState(**kwargs)


# one pure transition per trigger: state, metric -> state
_TRANSITIONS = {
    "epoch": Policy._observe_epoch,
    "cutoff": Policy._observe_cutoff,
    "oscillation": Policy._observe_oscillation,
    "plateau": Policy._observe_plateau,
}
