"""Policy triggers: *when* a metric-driven policy advances. One small frozen class per trigger.

A trigger is a config value with its own fields and defaults, and a pure transition
``observe(state, metric) -> (state, fired)`` over its own frozen, versioned ``State``. The
:class:`~lrlab.policies.Policy` around it decides what advancing means (a sequence, a factor).

Adding a trigger is one class in this file (plus its test): decorate it with ``@trigger("name")``,
give it fields (``checked(default, validator)``), a nested ``State`` and ``observe``. The policy
config, ``lrlab schedules``, the state dict and its validation pick it up from the registry::

    @trigger("every")
    @dataclass(frozen=True)
    class Every(Trigger):
        "Advance after every `n` observations, whatever they say."

        n: int = checked(3, validate.integer, lo=1)

        @dataclass(frozen=True)
        class State(TriggerState):
            seen: int = checked(0, validate.integer, lo=0)

        def observe(self, state: State, metric: float) -> tuple[State, bool]:
            seen = state.seen + 1
            return self.State(seen % self.n), seen == self.n

>>> p = Plateau(patience=1, threshold=0.1)
>>> s = p.init()
>>> fired = []
>>> for loss in (0.1, 0.09, 0.09, 0.09):
...     s, f = p.observe(s, loss)
...     fired.append(f)
>>> fired, s
([False, False, False, True], Plateau.State(best=0.09, bad_epochs=0, cooldown_left=0))
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lrlab import validate
from lrlab.errors import ConfigError, unknown_name_error

#: Every trigger by config name, in registration order.
TRIGGERS: dict[str, type[Trigger]] = {}


def trigger(name: str):
    """Class decorator: register a :class:`Trigger` under its config name."""

    def decorate(cls: type[Trigger]) -> type[Trigger]:
        if name in TRIGGERS:
            raise RuntimeError(f"trigger {name!r} registered twice")
        cls.type_name = name
        TRIGGERS[name] = cls
        return cls

    return decorate


def checked(default: Any, check: Callable[..., Any], **bounds: Any) -> Any:
    """A dataclass field whose value passes ``check(value, where, **bounds)`` (lrlab.validate)."""
    return dataclasses.field(
        default=default, metadata={"check": functools.partial(check, **bounds)}
    )


def optional(check: Callable[..., Any]) -> Callable[..., Any]:
    """``check`` that also lets ``None`` through."""

    def check_or_none(value: Any, where: str, **bounds: Any) -> Any:
        return None if value is None else check(value, where, **bounds)

    return check_or_none


@dataclass(frozen=True)
class TriggerState:
    """Base of each trigger's ``State``: plain numbers, each field declared with :func:`checked`
    (so a saved state is validated by the same rules), serialised with a ``version``."""

    version: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> TriggerState:
        """Validate a saved state as a whole, then build it (never half-applied)."""
        d = validate.mapping(d, where)
        if d.get("version") != cls.version:
            raise ConfigError(
                f"{where}.version: {d.get('version')!r} not supported (this lrlab reads {cls.version})"
            )
        fields = dataclasses.fields(cls)
        validate.known_keys(
            d, where, {"version", *(f.name for f in fields)}, [f.name for f in fields]
        )
        values = {
            f.name: f.metadata["check"](d[f.name], validate.field(where, f.name)) for f in fields
        }
        return cls(**values)


@dataclass(frozen=True)
class Trigger:
    """Base of every trigger: field validation, config round trip, the ``observe`` contract."""

    type_name: ClassVar[str] = ""
    #: One line for ``lrlab schedules`` and the docs.
    State: ClassVar[type[TriggerState]] = TriggerState

    # the keys the user wrote (to_config writes back exactly those); not part of the value
    _given: frozenset = dataclasses.field(
        default=frozenset(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self._check(self.type_name)
        given = {f.name for f in self._fields() if getattr(self, f.name) != f.default}
        object.__setattr__(self, "_given", frozenset(given))

    @classmethod
    def _fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.init]

    def _check(self, where: str) -> None:
        """Validate and normalise every field; ``where`` prefixes the field names in errors."""
        for f in self._fields():
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(
                    self, f.name, check(getattr(self, f.name), validate.field(where, f.name))
                )

    @classmethod
    def from_keys(cls, keys: Mapping[str, Any], where: str) -> Trigger:
        """Build from config keys; errors name ``where.key`` (``policy.patience``)."""
        fields = {f.name: f for f in cls._fields()}
        values = {}
        for key, value in keys.items():  # each key checked with the user's path first
            if key not in fields:
                raise _misplaced_key(cls, key, where)
            check = fields[key].metadata.get("check")
            values[key] = value if check is None else check(value, validate.field(where, key))
        built = cls(**values)
        object.__setattr__(built, "_given", frozenset(keys))
        return built

    def to_config(self) -> dict[str, Any]:
        """The keys as written (defaults left out stay out)."""
        return {f.name: getattr(self, f.name) for f in self._fields() if f.name in self._given}

    @classmethod
    def describe(cls) -> str:
        """``name: key=default ...`` for ``lrlab schedules``."""
        keys = " ".join(f"{f.name}={f.default!r}" for f in cls._fields()) or "(no keys)"
        return f"{cls.type_name}: {keys}"

    def init(self) -> TriggerState:
        return self.State()

    def observe(self, state: Any, metric: float) -> tuple[Any, bool]:
        """``(new state, fired)`` after a finite ``metric``. Pure."""
        raise NotImplementedError

    def accepts(self, drop: float) -> bool:
        """Whether an advance that lowers the rate by ``drop`` happens (see :class:`Plateau`)."""
        return True


def _misplaced_key(cls: type[Trigger], key: str, where: str) -> ConfigError:
    users = [n for n, t in TRIGGERS.items() if key in {f.name for f in t._fields()}]
    own = ", ".join(f.name for f in cls._fields()) or "none"
    if users:
        return ConfigError(
            f"{validate.field(where, key)} applies only to trigger "
            f"{' or '.join(map(repr, users))}, not {cls.type_name!r}; keys for "
            f"{cls.type_name!r}: {own}"
        )
    return unknown_name_error(
        f"key for {where!r} (trigger {cls.type_name!r})", key, own.split(", ")
    )


def build_trigger(config: Any, where: str) -> Trigger:
    """A trigger from its name, its ``{"type": name, ...}`` table, or a trigger value."""
    if isinstance(config, Trigger):
        return config
    if isinstance(config, str):
        return TRIGGERS[validate.choice(config, where, TRIGGERS)].from_keys({}, where)
    table = validate.mapping(config, where)
    if "type" not in table:
        raise ConfigError(f"{where} has no 'type' key; allowed: {', '.join(TRIGGERS)}")
    name = validate.choice(table["type"], validate.field(where, "type"), TRIGGERS)
    return TRIGGERS[name].from_keys({k: v for k, v in table.items() if k != "type"}, where)


# --------------------------------------------------------------------------------------------
# The triggers


@trigger("epoch")
@dataclass(frozen=True)
class Epoch(Trigger):
    """Advance at every observation (the authors' "by epoch")."""

    @dataclass(frozen=True)
    class State(TriggerState):
        pass

    def observe(self, state: State, metric: float) -> tuple[State, bool]:
        return state, True


@trigger("cutoff")
@dataclass(frozen=True)
class Cutoff(Trigger):
    """Advance when ``|v_t - v_(t-1)| < c``, then ``c *= shrink``; ``c0 = cutoff``, or
    ``rate * |v_1|`` (``rate`` 0.01 when neither is given: the authors' relative cutoff)."""

    default_rate: ClassVar[float] = 0.01
    rate: float | None = checked(None, optional(validate.real), lo=0, lo_open=True)
    cutoff: float | None = checked(None, optional(validate.real), lo=0, lo_open=True)
    shrink: float = checked(0.2, validate.real, lo=0, lo_open=True, hi=1)

    @dataclass(frozen=True)
    class State(TriggerState):
        last: float | None = checked(None, optional(validate.real))  # the previous metric
        cutoff: float | None = checked(None, optional(validate.real), lo=0)  # the current c

    def _check(self, where: str) -> None:
        super()._check(where)
        if self.rate is not None and self.cutoff is not None:
            raise ConfigError(
                f"{where}: give 'rate' (c0 = rate * |v_1|) or 'cutoff' (absolute c0), not both"
            )

    def observe(self, state: State, metric: float) -> tuple[State, bool]:
        if state.last is None:  # the first metric only sets c0
            rate = self.default_rate if self.rate is None else self.rate
            c0 = self.cutoff if self.cutoff is not None else rate * abs(metric)
            return self.State(metric, c0), False
        c = state.cutoff if state.cutoff is not None else 0.0  # set with last, never None here
        fired = abs(metric - state.last) < c
        return self.State(metric, c * self.shrink if fired else c), fired


@trigger("oscillation")
@dataclass(frozen=True)
class Oscillation(Trigger):
    """Advance when ``v_t > v_(t-1) + margin`` for more than ``patience`` observations in a row.

    ``authors_bug``: compare the first metric with a padded 0.0, as the authors' code did (it
    advances after epoch 1 for any positive loss; only to replay their runs).
    """

    margin: float = checked(0.0, validate.real, lo=0)
    patience: int = checked(0, validate.integer, lo=0)
    authors_bug: bool = checked(False, validate.boolean)

    @dataclass(frozen=True)
    class State(TriggerState):
        last: float | None = checked(None, optional(validate.real))  # the previous metric
        rises: int = checked(0, validate.integer, lo=0)  # consecutive rises so far

    def observe(self, state: State, metric: float) -> tuple[State, bool]:
        previous = state.last
        if previous is None and self.authors_bug:
            previous = 0.0
        if previous is None:
            return self.State(metric, 0), False
        rises = state.rises + 1 if metric > previous + self.margin else 0
        fired = rises > self.patience
        return self.State(metric, 0 if fired else rises), fired


@trigger("plateau")
@dataclass(frozen=True)
class Plateau(Trigger):
    """``ReduceLROnPlateau``'s rule, decision for decision, and sign-correct on negative metrics.

    A metric improves on ``best`` when it passes the bar: mode min, rel ``best * (1 - threshold)``,
    abs ``best - threshold``; mode max, rel ``best * (1 + threshold)``, abs ``best + threshold``
    (torch's own products, so a metric exactly on the bar decides as in torch). For a negative
    ``best`` the rel factors swap, so the bar still lies on the far side of ``best``. After more
    than ``patience`` observations without an improvement it fires, then waits ``cooldown``. An
    advance that would lower the rate by ``eps`` or less is skipped, as torch skips it.
    """

    mode: str = checked("min", validate.choice, choices=("min", "max"))
    threshold: float = checked(1e-4, validate.real, lo=0)
    threshold_mode: str = checked("rel", validate.choice, choices=("rel", "abs"))
    patience: int = checked(10, validate.integer, lo=0)
    cooldown: int = checked(0, validate.integer, lo=0)
    eps: float = checked(1e-8, validate.real, lo=0)

    @dataclass(frozen=True)
    class State(TriggerState):
        best: float | None = checked(None, optional(validate.real))
        bad_epochs: int = checked(0, validate.integer, lo=0)
        cooldown_left: int = checked(0, validate.integer, lo=0)

    def bar(self, best: float) -> float:
        """What a metric must beat (``<`` in mode min, ``>`` in mode max)."""
        if self.threshold_mode == "abs":
            return best - self.threshold if self.mode == "min" else best + self.threshold
        away, toward = 1.0 + self.threshold, 1.0 - self.threshold
        if self.mode == "min":
            return best * (toward if best >= 0 else away)
        return best * (away if best >= 0 else toward)

    def observe(self, state: State, metric: float) -> tuple[State, bool]:
        best, bad = state.best, state.bad_epochs
        improved = best is None or (
            metric < self.bar(best) if self.mode == "min" else metric > self.bar(best)
        )
        best, bad = (metric, 0) if improved else (best, bad + 1)
        cooldown = state.cooldown_left
        if cooldown > 0:
            cooldown, bad = cooldown - 1, 0
        fired = bad > self.patience
        if fired:
            cooldown, bad = self.cooldown, 0
        return self.State(best, bad, cooldown), fired

    def accepts(self, drop: float) -> bool:
        return not 0.0 <= drop <= self.eps
