"""``lrlab.torch.Scheduler``: lrlab schedules and policies driving any optimizer hyper-parameter.

The step count is explicit: after ``n`` calls of ``step()`` a group's learning rate is
``driver.value(state, n) * scale``, computed in closed form, never by multiplying the previous
value. Whatever drives a key is a :class:`lrlab.policies.Driver` (a schedule is a stateless one).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch.optim.lr_scheduler import LRScheduler

from lrlab import validate
from lrlab.errors import ConfigError
from lrlab.policies.driver import Driver, ScheduleDriver, as_driver, as_metric, config_of
from lrlab.schedules.base import SCALAR

STATE_FORMAT = "lrlab.torch.Scheduler"
STATE_VERSION = 2
#: The largest per-group multiplier accepted: larger ones are typos that overflow rates.
MAX_SCALE = 1e6


class _Slot:
    """Where one group keeps one hyper-parameter, and the cheapest correct way to write it.

    A float is assigned. A tensor is filled in place, so a compiled step or the user's own
    reference keeps seeing the optimizer's value; a plain 0-d CPU tensor is written through a
    NumPy view of its storage (a tenth of ``fill_``'s dispatch cost), any other with ``fill_``.
    ``momentum`` of an Adam-family group is ``betas[0]``, as torch's CyclicLR and OneCycleLR do.
    """

    __slots__ = ("beta1", "key", "plain", "tensor", "view")

    def __init__(self, group: dict[str, Any], key: str) -> None:
        self.key = key
        self.tensor: torch.Tensor | None = None
        self.view: Any = None
        self.beta1 = key == "momentum" and "momentum" not in group and "betas" in group
        self.plain = not self.beta1  # the value sits in group[key] itself
        if not self.beta1 and key not in group:
            known = ", ".join(sorted(k for k in group if k != "params"))
            raise ConfigError(f"hyperparams: the parameter group has no {key!r}; it has: {known}")

    def write(self, group: dict[str, Any], value: float) -> None:
        # the group is passed in, not kept: optimizer.load_state_dict replaces the group dicts
        if self.beta1:
            betas = group["betas"]
            if isinstance(betas[0], torch.Tensor):
                betas[0].fill_(value)
            else:
                group["betas"] = (value, *betas[1:])
            return
        current = group[self.key]
        if current is self.tensor:
            self.view[()] = value
        elif isinstance(current, torch.Tensor):
            self._adopt(current)
            current.fill_(value)
        else:
            group[self.key] = value

    def _adopt(self, tensor: torch.Tensor) -> None:
        cpu_scalar = (
            type(tensor) is torch.Tensor
            and tensor.device.type == "cpu"
            and tensor.dim() == 0
            and not tensor.requires_grad
            and tensor.dtype in (torch.float32, torch.float64)
        )
        self.tensor, self.view = (tensor, tensor.numpy()) if cpu_scalar else (None, None)


def set_hyperparam(group: dict[str, Any], key: str, value: Any) -> None:
    """Set ``group[key] = value`` the way an optimizer expects it: the one writer of param-group
    values (the Scheduler, the range test and its restore all use it).

    A number is assigned to a float and filled into a tensor in place (never replaced: a compiled
    step and the user's own reference keep seeing it); ``momentum`` is ``betas[0]`` for
    Adam-family groups. A tuple (saved ``betas``) or tensor is copied element-wise into the live
    tensors it replaces; anything else is assigned.

    >>> g = {"lr": torch.tensor(0.1), "betas": (0.9, 0.999)}
    >>> lr = g["lr"]
    >>> set_hyperparam(g, "lr", 0.5); set_hyperparam(g, "momentum", 0.8)
    >>> g["lr"] is lr, float(lr), g["betas"]
    (True, 0.5, (0.8, 0.999))
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        _Slot(group, key).write(group, value)
        return
    current = group.get(key)
    if (
        isinstance(current, tuple)
        and isinstance(value, tuple | list)
        and len(current) == len(value)
    ):
        group[key] = tuple(_filled(live, new) for live, new in zip(current, value))
    else:
        group[key] = _filled(current, value)


def _filled(live: Any, value: Any) -> Any:
    """``live`` with ``value`` copied in when ``live`` is a tensor, else ``value`` itself."""
    if not isinstance(live, torch.Tensor):
        return value
    with torch.no_grad():
        if isinstance(value, torch.Tensor):
            live.copy_(value.to(live.device))
        else:
            live.fill_(value)
    return live


@dataclass
class _Driven:
    """One hyper-parameter: its drivers (groups given the same one share it and its state)."""

    key: str
    drivers: list[Driver]
    states: list[Any]
    index: list[int]  # group i is driven by drivers[index[i]]
    scales: list[float] | None  # per-group multipliers (lr only)
    slots: list[_Slot]

    single: bool = dataclasses.field(init=False)  # one driver for every group

    value: Any = dataclasses.field(init=False)  # drivers[0].value, bound once

    plain: bool = dataclasses.field(init=False)  # every group keeps the value at group[key]

    def __post_init__(self) -> None:
        self.single = len(self.drivers) == 1
        self.value = _bound_value(self.drivers[0])
        self.plain = all(slot.plain for slot in self.slots)

    def write(self, groups: list[dict[str, Any]], values: list[float]) -> None:
        for slot, group, value in zip(self.slots, groups, values):
            slot.write(group, value)

    def values(self, step: int) -> list[float]:
        values = [d.value(s, step) for d, s in zip(self.drivers, self.states)]
        if self.scales is None:
            return [values[i] for i in self.index]
        return [values[i] * k for i, k in zip(self.index, self.scales)]


def _bound_value(driver: Driver) -> Any:
    """``driver.value``; for a plain schedule its ``evaluate`` bound once, one call less a step."""
    if not isinstance(driver, ScheduleDriver):
        return driver.value
    evaluate = driver.schedule.evaluate

    def value(state: None, step: int) -> float:
        return float(evaluate(float(step), SCALAR))

    return value


def _drivers_per_group(spec: Any, where: str, n_groups: int) -> tuple[list[Driver], list[int]]:
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        if len(spec) != n_groups:
            raise ConfigError(f"{where}: got {len(spec)} schedules for {n_groups} parameter groups")
        given = list(spec)
    else:
        given = [spec] * n_groups
    drivers: list[Driver] = []
    originals: list[Any] = []
    index = []
    for i, s in enumerate(given):
        known = next((j for j, o in enumerate(originals) if o is s), None)
        if known is None:
            drivers.append(as_driver(s, where if s is spec else f"{where}[{i}]"))
            originals.append(s)
            known = len(drivers) - 1
        index.append(known)
    return drivers, index


def _check_scales(scales: Any, n_groups: int, where: str = "scales") -> list[float]:
    def scale(value: Any, at: str) -> float:
        return validate.real(value, at, lo=0, hi=MAX_SCALE)

    return list(validate.sequence(scales, where, scale, min_len=n_groups, max_len=n_groups))


def _requested(schedule: Any, lr: Any, momentum: Any, hyperparams: Any) -> dict[str, Any]:
    specs: dict[str, Any] = {}
    if hyperparams is not None:
        for key, spec in validate.mapping(hyperparams, "hyperparams").items():
            specs[validate.string(key, "hyperparams key")] = spec
    for key, spec in (("lr", schedule), ("lr", lr), ("momentum", momentum)):
        if spec is None:
            continue
        if key in specs:
            raise ConfigError(f"Scheduler: {key!r} is given twice; give it once")
        specs[key] = spec
    if not specs:
        raise ConfigError("Scheduler: nothing to drive; give a schedule (for lr) or hyperparams")
    return specs


_EAGER_STEP: Any = None


def _eager_step() -> Any:
    """``Scheduler.step`` that Dynamo runs eagerly (a graph break), made on first use: wrapping it
    imports ``torch._dynamo`` (about 2 s of CPU), which a process that never compiles should not
    pay at ``import lrlab.torch``; a process that gets here is compiling, so has it already."""
    global _EAGER_STEP
    if _EAGER_STEP is None:
        _EAGER_STEP = torch.compiler.disable(Scheduler.step)
    return _EAGER_STEP


class Scheduler(LRScheduler):
    """Drive an optimizer's hyper-parameters with lrlab schedules or policies.

    Args:
        optimizer: any ``torch.optim.Optimizer``; tensor values are updated in place.
        schedule: what drives ``lr`` (same as ``lr=``): a schedule, policy, config dict or
            driver for every parameter group, or a sequence with one per group.
        lr, momentum: the same for those keys; ``momentum`` is ``betas[0]`` for Adam-family
            optimizers (as torch's ``CyclicLR`` and ``OneCycleLR``).
        hyperparams: ``{key: schedule}`` for any param-group key (``weight_decay``, ...).
        scales: optional per-group multipliers of ``lr`` (e.g. a lower rate for a backbone),
            each in [0, 1e6] (:data:`MAX_SCALE`).
        sync_metric: when ``torch.distributed`` is initialised with more than one rank,
            ``step(metric)`` runs an ``all_reduce`` (a collective: every rank must call it, equally
            often) and every policy sees the mean over ranks, so all ranks decide alike. Pass
            ``False`` when the metric is already identical on every rank, or when only some
            ranks feed metrics.

    ``step()`` advances the step count by one: call it after every ``optimizer.step()`` for a
    per-iteration schedule, or once per epoch for a per-epoch schedule. ``step(metric)`` feeds
    one metric value (normally the validation loss) to the policies without advancing time;
    plain schedules ignore it. ``set_step(n)`` jumps to step ``n``.

    Example::

        sched = Scheduler(opt, {"type": "cyclic", "mode": "triangular2", "base_lr": 1e-3,
                                "max_lr": 6e-3, "step_size_up": 2000})
        for x, y in loader:
            loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad(); sched.step()
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: Any = None,
        *,
        lr: Any = None,
        momentum: Any = None,
        hyperparams: Mapping[str, Any] | None = None,
        scales: Sequence[float] | None = None,
        sync_metric: bool = True,
    ) -> None:
        groups = optimizer.param_groups
        specs = _requested(schedule, lr, momentum, hyperparams)
        self.sync_metric = validate.boolean(sync_metric, "sync_metric")
        lr_scales = None if scales is None else _check_scales(scales, len(groups))
        if lr_scales is not None and "lr" not in specs:
            raise ConfigError("scales multiply the learning rate; give a schedule for lr too")
        self.driven: dict[str, _Driven] = {}
        for key, spec in specs.items():
            drivers, index = _drivers_per_group(
                spec, "schedule" if key == "lr" else key, len(groups)
            )
            slots = [_Slot(g, key) for g in groups]
            key_scales = lr_scales if key == "lr" else None
            self.driven[key] = _Driven(
                key, drivers, [d.init() for d in drivers], index, key_scales, slots
            )
        self._plan = list(self.driven.values())
        self._lr_undriven = "lr" not in self.driven
        super().__init__(optimizer)

    # ------------------------------------------------------------------ the lrlab API
    @property
    def states(self) -> dict[str, list[Any]]:
        """Each driven key's driver states (``None`` for a schedule), one per distinct driver."""
        return {key: list(d.states) for key, d in self.driven.items()}

    @property
    def scales(self) -> list[float]:
        lr = self.driven.get("lr")
        return (
            [1.0] * len(self.optimizer.param_groups)
            if lr is None or lr.scales is None
            else list(lr.scales)
        )

    def values_at(self, step: int) -> dict[str, list[float]]:
        """Every driven key's per-group value at ``step`` given the current states."""
        return {key: d.values(step) for key, d in self.driven.items()}

    def lr_at(self, step: int) -> list[float]:
        """The learning rate of every group at ``step`` given the current states."""
        lr = self.driven.get("lr")
        if lr is None:
            return [float(g["lr"]) for g in self.optimizer.param_groups]
        return lr.values(step)

    def set_step(self, step: int) -> None:
        """Jump to step ``step`` (explicit time, no replay) and apply its values."""
        self.last_epoch = validate.integer(step, "step", lo=0)
        self._apply()

    def observe(self, metric: float) -> None:
        """Feed one metric value to the drivers (without advancing time) and apply the result."""
        metric = as_metric(metric)
        if self.sync_metric:
            metric = _mean_over_ranks(metric)
        for d in self._plan:
            d.states = [drv.observe(s, metric) for drv, s in zip(d.drivers, d.states)]
        self._apply()

    # ------------------------------------------------------------------ torch's API
    def step(self, metric: float | None = None) -> None:
        """Advance one step, or with ``metric``, feed it to the policies (see the class doc)."""
        if torch.compiler.is_compiling():  # called by this name: Dynamo recognises it so
            # inside a compiled function Dynamo would specialise on the step count and recompile
            # every step: run the update eagerly instead (a graph break). A decorator would do the
            # same but costs microseconds on every eager call.
            return _eager_step()(self, metric)
        self._step_count += 1
        if metric is None:
            self.last_epoch += 1
            self._apply()
        else:
            self.observe(metric)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return self.lr_at(self.last_epoch)

    def get_last_lr(self) -> list[float | torch.Tensor]:
        """The learning rates last applied, typed like each group's ``lr`` (tensors are copies)."""
        return [
            torch.tensor(lr, dtype=group["lr"].dtype, device=group["lr"].device)
            if isinstance(group["lr"], torch.Tensor)
            else lr
            for group, lr in zip(self.optimizer.param_groups, self._last_lr)
        ]

    def _apply(self) -> None:
        # every step runs this: it is written for the common case (one driver per key, float
        # values) and hands anything else to _Driven.write. _last_lr keeps plain floats: copying
        # tensors on every step would cost more than the schedule; get_last_lr() copies them.
        step, groups = self.last_epoch, self.optimizer.param_groups
        for d in self._plan:
            key, scales = d.key, d.scales
            if d.single:
                value = d.value(d.states[0], step)
                values = [value] * len(groups) if scales is None else [value * k for k in scales]
            else:
                values = d.values(step)
            if d.plain:
                for group, value in zip(groups, values):
                    if group[key].__class__ is not float:
                        d.write(groups, values)  # a tensor somewhere: each group with care
                        break
                    group[key] = value
            else:
                d.write(groups, values)
            if key == "lr":
                self._last_lr = values
        if self._lr_undriven:
            self._last_lr = cast(list, self.lr_at(step))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """A small dict of plain values (loads with ``torch.load(..., weights_only=True)``)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "step": int(self.last_epoch),
            "step_count": int(self._step_count),
            "scales": self.scales,
            "hyperparams": {
                key: {
                    "configs": [config_of(drv) for drv in d.drivers],
                    "groups": list(d.index),
                    "states": [drv.state_to_dict(s) for drv, s in zip(d.drivers, d.states)],
                }
                for key, d in self.driven.items()
            },
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`. The whole dict is validated first (one-line ConfigError
        naming the field); a failed load leaves the scheduler as it was."""
        step, step_count, scales, states = _parse_state(self, state_dict)
        lr = self.driven.get("lr")
        if lr is not None and (lr.scales is not None or any(k != 1.0 for k in scales)):
            lr.scales = scales
        for key, key_states in states.items():
            self.driven[key].states = key_states
        self._step_count = step_count
        self.last_epoch = step
        self._apply()


_STATE_KEYS = ("format", "version", "step", "step_count", "scales", "hyperparams")


def _parse_state(sched: Scheduler, sd: Any) -> tuple[int, int, list[float], dict[str, list[Any]]]:
    """Everything a load would assign, validated; raises before anything is assigned."""
    where = "state_dict"
    sd = validate.mapping(sd, where)
    if sd.get("format") != STATE_FORMAT:
        raise ConfigError(f"{where}: not an {STATE_FORMAT} state (format {sd.get('format')!r})")
    if sd.get("version") != STATE_VERSION:
        raise ConfigError(
            f"{where}.version: {sd.get('version')!r} not supported (this lrlab reads {STATE_VERSION})"
        )
    validate.known_keys(sd, where, _STATE_KEYS, _STATE_KEYS)
    step = validate.integer(sd["step"], f"{where}.step", lo=0)
    step_count = validate.integer(sd["step_count"], f"{where}.step_count", lo=0)
    scales = _check_scales(sd["scales"], len(sched.optimizer.param_groups), f"{where}.scales")
    if "lr" not in sched.driven and any(k != 1.0 for k in scales):
        raise ConfigError(f"{where}.scales: this scheduler does not drive lr; expected all 1.0")
    saved = validate.mapping(sd["hyperparams"], f"{where}.hyperparams")
    validate.known_keys(saved, f"{where}.hyperparams", sched.driven, sched.driven)
    states = {
        key: _parse_key_state(d, saved[key], f"{where}.hyperparams.{key}")
        for key, d in sched.driven.items()
    }
    return step, step_count, scales, states


def _parse_key_state(d: _Driven, saved: Any, where: str) -> list[Any]:
    saved = validate.mapping(saved, where)
    validate.known_keys(
        saved, where, ("configs", "groups", "states"), ("configs", "groups", "states")
    )
    groups = validate.sequence(saved["groups"], f"{where}.groups", validate.integer)
    if list(groups) != d.index:
        raise ConfigError(
            f"{where}.groups: saved with groups sharing drivers as {list(groups)}, this scheduler "
            f"shares them as {d.index}"
        )
    n = len(d.drivers)
    configs = validate.sequence(
        saved["configs"], f"{where}.configs", lambda v, w: v, min_len=n, max_len=n
    )
    raw = validate.sequence(
        saved["states"], f"{where}.states", lambda v, w: v, min_len=n, max_len=n
    )
    states = [
        drv.state_from_dict(s, f"{where}.states[{i}]")
        for i, (drv, s) in enumerate(zip(d.drivers, raw))
    ]
    if list(configs) != [config_of(drv) for drv in d.drivers]:
        warnings.warn(f"lrlab Scheduler: {where} was saved with a different schedule", stacklevel=4)
    return states


def _mean_over_ranks(metric: float) -> float:
    """Every rank must decide alike: average the metric over ranks when distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        value = torch.tensor([metric], dtype=torch.float64, device=device)
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return float(value.item()) / dist.get_world_size()
    return metric


__all__ = ["MAX_SCALE", "STATE_FORMAT", "STATE_VERSION", "Scheduler", "set_hyperparam"]
