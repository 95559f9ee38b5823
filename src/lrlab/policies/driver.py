"""One protocol for whatever drives a hyper-parameter: schedules and policies alike.

A *driver* has an explicit state and three pure functions (optax's ``WrappedSchedule`` idea: a
schedule is made to look like a stateful transformation whose state never changes)::

    state = driver.init()
    lr = driver.value(state, step)          # the value at step ``step``
    state = driver.observe(state, metric)   # after one metric (a schedule ignores it)

``stateful`` says whether ``observe`` can change anything (a policy) or not (a schedule), so a
caller never needs to guess what it holds: ``lrlab.torch``, replays, exports and the CLI all go
through :func:`as_driver`.

>>> d = as_driver({"type": "cosine", "lr": 1.0, "total": 4})
>>> s = d.init()
>>> d.stateful, d.value(d.observe(s, 0.5), 2)
(False, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from lrlab import validate
from lrlab.errors import ConfigError
from lrlab.schedules.base import SCALAR, Schedule, from_config


@runtime_checkable
class Driver(Protocol):
    """What drives a hyper-parameter. ``value`` must be cheap: it runs on every training step.

    Optional: ``advances(state) -> int`` (how many times it advanced on metrics, for replays'
    ``pop_epochs``; 0 when absent) and ``to_config()`` (saved beside the state; see
    :func:`config_of`).
    """

    stateful: bool

    def init(self) -> Any: ...

    def value(self, state: Any, step: int) -> float: ...

    def observe(self, state: Any, metric: float) -> Any: ...

    def state_to_dict(self, state: Any) -> dict[str, Any] | None: ...

    def state_from_dict(self, d: Any, where: str = "state") -> Any:
        """The state saved by ``state_to_dict``, validated as a whole (one-line ConfigError)."""
        ...


@dataclass(frozen=True)
class ScheduleDriver:
    """A schedule as a stateless driver: its state is ``None`` and never changes."""

    schedule: Schedule
    stateful = False

    def init(self) -> None:
        return None

    def value(self, state: None, step: int) -> float:
        return float(self.schedule.evaluate(float(step), SCALAR))  # = schedule(step), one call less

    def observe(self, state: None, metric: float) -> None:
        return state

    def advances(self, state: None) -> int:
        return 0

    def state_to_dict(self, state: None) -> None:
        return None

    def state_from_dict(self, d: Any, where: str = "state") -> None:
        if d is not None:
            raise ConfigError(
                f"{where}: a saved policy state, but this driver is a plain schedule "
                f"({self.schedule.type_name!r}); was it saved with a policy?"
            )
        return None

    def to_config(self) -> dict[str, Any]:
        return self.schedule.to_config()


def as_metric(value: Any, where: str = "metric") -> float:
    """A metric as a float: a number or a one-element tensor; an integer too large for a float
    is infinite (and so ignored by every policy). Anything else is a one-line ConfigError.

    >>> as_metric(2), as_metric(-10**400)
    (2.0, -inf)
    """
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of several values
        raise ConfigError(f"{where} must be a number, got {validate.describe(value)}") from None


def as_driver(obj: Any, where: str = "schedule") -> Driver:
    """A driver from a schedule, a policy, a config dict or a driver (returned as is)."""
    if isinstance(obj, Mapping):
        obj = from_config(obj)
    if isinstance(obj, Schedule):
        return ScheduleDriver(obj)
    if isinstance(obj, Driver):
        return obj
    raise ConfigError(
        f"{where} must be an lrlab schedule, policy or config dict, got {validate.describe(obj)}"
    )


def config_of(driver: Driver) -> dict[str, Any] | None:
    """The driver's config, or ``None`` for one that has none (a Python function)."""
    to_config = getattr(driver, "to_config", None)
    try:
        return None if to_config is None else to_config()
    except ConfigError:  # e.g. a schedule made from a Python function
        return None


def advances(driver: Driver, state: Any) -> int:
    """How many times ``driver`` advanced on metrics in ``state`` (0 if it does not say)."""
    count = getattr(driver, "advances", None)
    return 0 if count is None else count(state)
