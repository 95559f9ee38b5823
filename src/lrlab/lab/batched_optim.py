"""Batched SGD and Adam/AdamW for :mod:`lrlab.lab.batched`: one update for K trials at once.

Parameters, gradients and optimizer state are ``(K, P)`` tensors (row k = trial k). Every
hyperparameter may differ per trial: it is a ``(K, 1)`` column, and so is the learning rate,
passed at each step. The update is torch.optim's single-tensor algorithm, operation for
operation (``torch/optim/sgd.py`` and ``adam.py``), with per-row scalars as columns, so it equals
torch.optim's update up to float32 rounding (``tests/test_lab_batched.py`` checks 1e-6 relative
over several steps). What must be equal within a batch is what changes the algorithm's shape:
the optimizer type, whether momentum is used, ``nesterov``, ``amsgrad``
(see :func:`optimizer_shape`).

Hyper-parameters a schedule drives (``TrialSpec.hyperparams``: the keys of :data:`DRIVABLE`) are
passed at each step too, as ``(K,)`` values, and read as torch.optim reads its param group at
each step: SGD's momentum may then be 0 at some steps and not at others, for some trials and not
others, so a driven momentum keeps a per-row mask of what torch would do (no buffer yet, or a
step without momentum).

``select(rows)`` keeps some trials only (a diverged trial leaves the stack).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

#: The hyper-parameters each batched optimizer reads per step from a schedule (``momentum`` of
#: Adam is ``betas[0]``, as ``lrlab.torch.Scheduler`` sets it): every key
#: :func:`lrlab.lab.contract.hyperparam_keys` allows.
DRIVABLE = {
    "sgd": ("momentum", "dampening", "weight_decay"),
    "adam": ("momentum", "eps", "weight_decay"),
    "adamw": ("momentum", "eps", "weight_decay"),
}


def optimizer_shape(config: Mapping[str, Any], driven: Sequence[str] = ()) -> tuple:
    """What trials batched together must share for one update to serve them all (``driven``:
    the scheduled hyper-parameters; a scheduled SGD momentum is decided per step)."""
    if config["type"] == "sgd":
        momentum = "driven" if "momentum" in driven else config["momentum"] != 0
        return ("sgd", momentum, bool(config["nesterov"]))
    return (config["type"], bool(config["amsgrad"]))


def _check_driven(kind: str, driven: Sequence[str]) -> None:
    unknown = [k for k in driven if k not in DRIVABLE[kind]]
    if unknown:
        raise ValueError(f"batched {kind}: cannot schedule {unknown[0]!r} (only {DRIVABLE[kind]})")


def _column(values: Sequence[float], device: torch.device) -> torch.Tensor:
    return torch.tensor([float(v) for v in values], dtype=torch.float32, device=device)[:, None]


class BatchedSGD:
    """torch.optim.SGD (momentum, dampening, nesterov, weight decay) for K trials."""

    def __init__(
        self, configs: Sequence[Mapping[str, Any]], device: torch.device, driven: Sequence[str] = ()
    ):
        shapes = {optimizer_shape(c, driven) for c in configs}
        if len(shapes) != 1 or next(iter(shapes))[0] != "sgd":
            raise ValueError(f"BatchedSGD: trials need one SGD shape, got {sorted(shapes)}")
        _check_driven("sgd", driven)
        _, self.uses_momentum, self.nesterov = shapes.pop()
        self.momentum = _column([c["momentum"] for c in configs], device)
        self.keep = _column([1.0 - c["dampening"] for c in configs], device)
        decay = [c["weight_decay"] for c in configs]
        self.weight_decay = (
            _column(decay, device) if any(decay) or "weight_decay" in driven else None
        )
        self.buf: torch.Tensor | None = None
        # a driven momentum: which rows have a buffer (torch makes it at the first step with
        # momentum != 0)
        self.has_buf = torch.zeros(len(configs), 1, dtype=torch.bool, device=device)

    def _read(self, hyper: Mapping[str, torch.Tensor]) -> None:
        """This step's scheduled values, rounded as torch rounds a Python float scalar."""
        if "momentum" in hyper:
            self.momentum = _col(hyper["momentum"].double())
        if "dampening" in hyper:
            self.keep = _col(1 - hyper["dampening"].double())
        if "weight_decay" in hyper:
            self.weight_decay = _col(hyper["weight_decay"].double())

    def step(
        self,
        params: torch.Tensor,
        grad: torch.Tensor,
        lr: torch.Tensor,
        hyper: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """One update of ``params`` ``(K, P)`` in place; ``lr`` is ``(K,)`` (any float dtype),
        ``hyper`` this step's scheduled hyper-parameters, each ``(K,)``."""
        self._read(hyper or {})
        if self.weight_decay is not None:
            grad = grad.addcmul(params, self.weight_decay)
        if self.uses_momentum == "driven":
            grad = self._driven_momentum(grad)
        elif self.uses_momentum:
            if self.buf is None:
                self.buf = grad.clone()
            else:
                self.buf.mul_(self.momentum).addcmul_(grad, self.keep)
            grad = grad.addcmul(self.buf, self.momentum) if self.nesterov else self.buf
        params.addcmul_(grad, lr.to(params.dtype)[:, None], value=-1)

    def _driven_momentum(self, grad: torch.Tensor) -> torch.Tensor:
        """torch's momentum step per row: skipped where momentum is 0 this step (the buffer
        kept), the buffer started as the gradient where a row has none yet."""
        active = self.momentum != 0
        if self.buf is None:
            self.buf = torch.zeros_like(grad)
        stepped = self.buf.mul(self.momentum).addcmul_(grad, self.keep)  # the ops of the fixed path
        updated = torch.where(self.has_buf, stepped, grad)
        self.buf = torch.where(active, updated, self.buf)
        self.has_buf |= active
        direction = grad.addcmul(self.buf, self.momentum) if self.nesterov else self.buf
        return torch.where(active, direction, grad)

    def select(self, rows: torch.Tensor) -> None:
        self.momentum, self.keep = self.momentum[rows], self.keep[rows]
        self.has_buf = self.has_buf[rows]
        if self.weight_decay is not None:
            self.weight_decay = self.weight_decay[rows]
        if self.buf is not None:
            self.buf = self.buf[rows]


class BatchedAdam:
    """torch.optim.Adam / AdamW (betas, eps, weight decay, amsgrad) for K trials."""

    def __init__(
        self, configs: Sequence[Mapping[str, Any]], device: torch.device, driven: Sequence[str] = ()
    ):
        shapes = {optimizer_shape(c) for c in configs}
        if len(shapes) != 1 or next(iter(shapes))[0] not in ("adam", "adamw"):
            raise ValueError(f"BatchedAdam: trials need one Adam shape, got {sorted(shapes)}")
        kind, self.amsgrad = shapes.pop()
        _check_driven(kind, driven)
        self.decoupled = kind == "adamw"

        # per-trial scalars stay in double on the device, as torch computes them in Python floats
        def f64(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float64, device=device)

        self.beta1 = f64([c["betas"][0] for c in configs])
        self.beta2 = f64([c["betas"][1] for c in configs])
        self.eps = _column([c["eps"] for c in configs], device)
        self.decay = f64([c["weight_decay"] for c in configs])
        self.has_decay = any(c["weight_decay"] != 0 for c in configs) or "weight_decay" in driven
        self.steps = 0
        self.exp_avg: torch.Tensor | None = None
        self.exp_avg_sq: torch.Tensor | None = None
        self.max_sq: torch.Tensor | None = None

    def _moments(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.exp_avg is None or self.exp_avg_sq is None:
            self.exp_avg, self.exp_avg_sq = torch.zeros_like(params), torch.zeros_like(params)
            if self.amsgrad:
                self.max_sq = torch.zeros_like(params)
        return self.exp_avg, self.exp_avg_sq

    def _read(self, hyper: Mapping[str, torch.Tensor]) -> None:
        """This step's scheduled values (torch reads ``betas``, ``eps``, ``weight_decay`` from
        the param group at every step; the bias correction uses the current ``beta1``)."""
        if "momentum" in hyper:
            self.beta1 = hyper["momentum"].double()
        if "weight_decay" in hyper:
            self.decay = hyper["weight_decay"].double()
        if "eps" in hyper:
            self.eps = _col(hyper["eps"].double())

    def step(
        self,
        params: torch.Tensor,
        grad: torch.Tensor,
        lr: torch.Tensor,
        hyper: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """One update of ``params`` ``(K, P)`` in place; ``lr`` is ``(K,)``, ``hyper`` this
        step's scheduled hyper-parameters, each ``(K,)``."""
        self._read(hyper or {})
        exp_avg, exp_avg_sq = self._moments(params)
        self.steps += 1
        lr64 = lr.double()
        if self.has_decay:
            if self.decoupled:
                params.mul_(_col(1 - lr64 * self.decay))
            else:
                grad = grad.addcmul(params, _col(self.decay))
        exp_avg.lerp_(grad, _col(1 - self.beta1))
        exp_avg_sq.mul_(_col(self.beta2)).addcmul_(grad * _col(1 - self.beta2), grad)
        step_size = lr64 / (1 - self.beta1**self.steps)
        correction2_sqrt = (1 - self.beta2**self.steps) ** 0.5
        if self.max_sq is not None:
            torch.maximum(self.max_sq, exp_avg_sq, out=self.max_sq)
            exp_avg_sq = self.max_sq
        denom = (exp_avg_sq.sqrt() / _col(correction2_sqrt)).add_(self.eps)
        params.addcmul_(exp_avg / denom, _col(step_size), value=-1)

    def select(self, rows: torch.Tensor) -> None:
        self.beta1, self.beta2 = self.beta1[rows], self.beta2[rows]
        self.decay, self.eps = self.decay[rows], self.eps[rows]
        for name in ("exp_avg", "exp_avg_sq", "max_sq"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value[rows])


def _col(values: torch.Tensor) -> torch.Tensor:
    """A float32 ``(K, 1)`` column of per-trial double scalars (rounded once, as torch rounds a
    Python float scalar)."""
    return values.float()[:, None]


def make_batched_optimizer(
    configs: Sequence[Mapping[str, Any]], device: torch.device, driven: Sequence[str] = ()
) -> BatchedSGD | BatchedAdam:
    """The batched optimizer for K normalised optimizer configs (one shape, see
    :func:`optimizer_shape`); ``driven``: the hyper-parameters scheduled per step."""
    kind = configs[0]["type"]
    cls = BatchedSGD if kind == "sgd" else BatchedAdam
    return cls(configs, device, driven)
