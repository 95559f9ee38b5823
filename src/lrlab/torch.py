"""``lrlab.torch.Scheduler``: any lrlab schedule or policy as a real torch ``LRScheduler``.

The step count is explicit: after ``n`` calls of ``step()`` the learning rate of a group is
``schedule(n) * scale``, computed in closed form, never by multiplying the previous value.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from lrlab.errors import ConfigError
from lrlab.schedules.base import Configurable, Schedule, from_config

STATE_FORMAT = "lrlab.torch.Scheduler"
STATE_VERSION = 1


def _is_policy(obj) -> bool:
    return hasattr(obj, "observe") and hasattr(obj, "initial_state")


def _as_controller(obj, where: str):
    if isinstance(obj, dict):
        obj = from_config(obj)
    if not (isinstance(obj, Schedule) or _is_policy(obj)):
        raise ConfigError(f"{where} must be an lrlab schedule, policy or config dict, got {obj!r}")
    return obj


class Scheduler(LRScheduler):
    """Drive an optimizer's learning rates with lrlab schedules or policies.

    Args:
        optimizer: any ``torch.optim.Optimizer``; a tensor ``lr`` is updated in place (``fill_``).
        schedule: one schedule / policy / config dict for every parameter group, or a sequence
            with one per group.
        scales: optional per-group multipliers (e.g. a lower rate for a backbone).

    ``step()`` advances the step count by one: call it after every ``optimizer.step()`` for a
    per-iteration schedule (horizons and periods in iterations), or once per epoch for a
    per-epoch schedule (horizons in epochs). ``step(metric)`` feeds one metric value (normally
    the validation loss, once per evaluation) to metric-driven policies without advancing time;
    plain schedules ignore it. ``set_step(n)`` jumps to step ``n``.

    Example::

        sched = Scheduler(opt, {"type": "cyclic", "mode": "triangular2", "base_lr": 1e-3,
                                "max_lr": 6e-3, "step_size_up": 2000})
        for x, y in loader:
            loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad(); sched.step()
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, schedule, *, scales: Sequence[float] | None = None
    ) -> None:
        groups = optimizer.param_groups
        if isinstance(schedule, Sequence) and not isinstance(schedule, (str, dict)):
            if len(schedule) != len(groups):
                raise ConfigError(
                    f"schedule: got {len(schedule)} schedules for {len(groups)} parameter groups"
                )
            per_group = [_as_controller(s, f"schedule[{i}]") for i, s in enumerate(schedule)]
        else:
            per_group = [_as_controller(schedule, "schedule")] * len(groups)
        if scales is None:
            scales = [1.0] * len(groups)
        scales = [float(s) for s in scales]
        if len(scales) != len(groups) or not all(math.isfinite(s) and s >= 0 for s in scales):
            raise ConfigError(f"scales must be {len(groups)} finite numbers >= 0, got {scales}")
        # groups that share a schedule share one evaluation and, for a policy, one state
        self.controllers: list = []
        self.group_controller: list[int] = []
        for c in per_group:
            if not any(c is known for known in self.controllers):
                self.controllers.append(c)
            self.group_controller.append(next(i for i, k in enumerate(self.controllers) if k is c))
        self.scales = scales
        self.policy_states = [
            c.initial_state() if _is_policy(c) else None for c in self.controllers
        ]
        super().__init__(optimizer)

    # ------------------------------------------------------------------ the lrlab API
    def lr_at(self, step: int) -> list[float]:
        """The learning rate of every group at ``step`` given the current policy state."""
        values = [
            c.lr(step, s) if s is not None else c(step)
            for c, s in zip(self.controllers, self.policy_states)
        ]
        return [values[i] * scale for i, scale in zip(self.group_controller, self.scales)]

    def set_step(self, step: int) -> None:
        """Jump to step ``step`` (explicit time, no replay) and apply its learning rates."""
        self.last_epoch = int(step)
        self._apply()

    def observe(self, metric: float) -> None:
        """Feed one metric value to the policies (without advancing time) and apply the result."""
        metric = self._agree(float(metric))
        self.policy_states = [
            c.observe(s, metric) if s is not None else None
            for c, s in zip(self.controllers, self.policy_states)
        ]
        self._apply()

    # ------------------------------------------------------------------ torch's API
    def step(self, metric: float | None = None) -> None:
        """Advance one step, or with ``metric``, feed it to the policies (see the class doc)."""
        if torch.compiler.is_compiling():
            # inside a compiled function Dynamo would specialise on the step count and recompile
            # every step: run the update eagerly instead (a graph break). A decorator would do the
            # same but costs microseconds on every eager call.
            return self._eager_step(metric)
        self._step_count += 1
        if metric is None:
            self.last_epoch += 1
            self._apply()
        else:
            self.observe(metric)

    @torch.compiler.disable
    def _eager_step(self, metric: float | None) -> None:
        return Scheduler.step(self, metric)

    def get_lr(self) -> list[float]:
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
        # _last_lr keeps plain floats: copying tensors on every step would cost more than the
        # schedule itself; get_last_lr() makes the tensor copies when someone asks
        lrs = self.lr_at(self.last_epoch)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = lrs

    def _agree(self, metric: float) -> float:
        """Every rank must decide alike: average the metric over ranks when distributed."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            value = torch.tensor([metric], dtype=torch.float64, device=device)
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            return float(value.item()) / dist.get_world_size()
        return metric

    def state_dict(self) -> dict[str, Any]:
        """A small dict of plain values (loads with ``torch.load(..., weights_only=True)``)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "step": int(self.last_epoch),
            "step_count": int(self._step_count),
            "configs": [
                c.to_config() if isinstance(c, Configurable) else None for c in self.controllers
            ],
            "group_controller": list(self.group_controller),
            "scales": list(self.scales),
            "policy_states": [
                None if s is None else c.state_to_dict(s)
                for c, s in zip(self.controllers, self.policy_states)
            ],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("format") != STATE_FORMAT:
            raise ConfigError("state_dict: not an lrlab.torch.Scheduler state (no 'format' key)")
        if state_dict.get("version") != STATE_VERSION:
            raise ConfigError(
                f"state_dict: version {state_dict.get('version')!r} not supported (this lrlab reads {STATE_VERSION})"
            )
        mine = [c.to_config() if isinstance(c, Configurable) else None for c in self.controllers]
        if state_dict.get("configs") != mine:
            warnings.warn(
                "lrlab Scheduler: loading a state saved with a different schedule", stacklevel=2
            )
        self.scales = [float(s) for s in state_dict["scales"]]
        self.policy_states = [
            None if d is None else c.state_from_dict(d)
            for c, d in zip(self.controllers, state_dict["policy_states"])
        ]
        self._step_count = int(state_dict.get("step_count", 0))
        self.set_step(state_dict["step"])
