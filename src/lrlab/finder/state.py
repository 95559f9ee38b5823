"""Snapshot and restore everything a range test touches.

``preserved_state(model, optimizer, grad_scaler)`` is a context manager: on entry it copies

* the model's ``state_dict()`` (parameters and persistent buffers, BatchNorm running statistics
  and ``num_batches_tracked`` included), its non-persistent buffers, every parameter's ``.grad``
  and every sub-module's ``training`` flag;
* the optimizer's ``state_dict()`` (per-parameter state such as momentum buffers and Adam moments,
  and every param-group hyper-parameter, ``lr`` included);
* the GradScaler's state (scale, growth tracker, and whether it was still lazily uninitialised);
* the RNG states of Python ``random``, NumPy's global generator, torch's CPU generator and, when
  CUDA is initialised, every CUDA device's generator;

and on exit (normal *or* exceptional, via ``finally``) it puts all of it back. The copies are made
with ``copy.deepcopy`` after moving every tensor to host memory, so the snapshot never holds
accelerator memory, and restoring copies the values back into the live tensors (``copy_``), so
tensor identities (and therefore optimizer param references) are unchanged; so do the optimizer's
param-group values that are tensors (a tensor ``lr``: :func:`lrlab.torch.set_hyperparam`), which
``Optimizer.load_state_dict`` alone would replace by copies. The result is equal to the state
before, bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lrlab.torch import set_hyperparam

__all__ = [
    "StateSnapshot",
    "preserved_state",
    "restore_state",
    "snapshot_state",
]


def _to_host(obj: Any) -> Any:
    """A deep copy of ``obj`` with every tensor detached, cloned and moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, Mapping):
        items = [(k, _to_host(v)) for k, v in obj.items()]
        try:
            out: Any = copy.copy(obj)  # keeps OrderedDict / defaultdict types and attributes
            out.clear()
            out.update(items)
            return out
        except Exception:  # pragma: no cover - exotic mappings
            return dict(items)
    if isinstance(obj, list):
        return [_to_host(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_to_host(v) for v in obj)
    return copy.deepcopy(obj)


def _copy_into(live: torch.Tensor, saved: torch.Tensor) -> None:
    with torch.no_grad():
        live.copy_(saved.to(live.device))


def _restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """``load_state_dict`` replaces every param-group value with its saved copy: put the values
    back into the tensors the groups held before instead (their identity is part of the state)."""
    before = [dict(g) for g in optimizer.param_groups]
    # load_state_dict may alias the tensors it is given, so give it its own copy.
    optimizer.load_state_dict(copy.deepcopy(saved))
    for group, old in zip(optimizer.param_groups, before):
        for key, live in old.items():
            if key == "params" or key not in group:
                continue
            loaded = group.get(key)
            group[key] = live
            set_hyperparam(group, key, loaded)


@dataclass
class StateSnapshot:
    """Host-memory copy of a model / optimizer / scaler / RNG state (see module docstring)."""

    model_state: dict[str, torch.Tensor] | None = None
    extra_buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    grads: dict[str, torch.Tensor | None] = field(default_factory=dict)
    training: dict[str, bool] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    scaler_state: dict[str, Any] | None = None
    scaler_lazy: bool = False
    rng: dict[str, Any] = field(default_factory=dict)

    def nbytes(self) -> int:
        """Bytes of tensor data held by the snapshot (all in host memory)."""
        parts = [self.model_state, self.extra_buffers, self.grads, self.optimizer_state]
        return sum(t.numel() * t.element_size() for t in _tensors(parts))

    def devices(self) -> set[str]:
        """Device types of every tensor in the snapshot (always ``{"cpu"}`` or empty)."""
        parts = [self.model_state, self.extra_buffers, self.grads, self.optimizer_state, self.rng]
        return {t.device.type for t in _tensors(parts)}


def _tensors(obj: Any):
    """Every tensor inside nested dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    # Only snapshot CUDA when it is already initialised: querying it otherwise would initialise it
    # (a side effect of its own), and an uninitialised CUDA generator cannot have been used.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None:
        try:
            if torch.backends.mps.is_available():
                state["mps"] = mps.get_rng_state().cpu()
        except Exception:  # pragma: no cover - platform specific
            pass
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state:  # pragma: no cover - platform specific
        torch.mps.set_rng_state(state["mps"])


def snapshot_state(
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    grad_scaler: Any = None,
    *,
    rng: bool = True,
) -> StateSnapshot:
    """Copy the state of ``model``, ``optimizer``, ``grad_scaler`` and the RNGs to host memory."""
    snap = StateSnapshot()
    if model is not None:
        sd = model.state_dict()
        snap.model_state = _to_host(sd)
        for name, buf in model.named_buffers():
            if name not in sd and buf is not None:
                snap.extra_buffers[name] = _to_host(buf)
        for name, p in model.named_parameters():
            snap.grads[name] = None if p.grad is None else _to_host(p.grad)
        snap.training = {name: m.training for name, m in model.named_modules()}
    if optimizer is not None:
        snap.optimizer_state = _to_host(optimizer.state_dict())
    if grad_scaler is not None:
        snap.scaler_state = _to_host(grad_scaler.state_dict())
        snap.scaler_lazy = getattr(grad_scaler, "_scale", None) is None
    if rng:
        snap.rng = _rng_state()
    return snap


def restore_state(
    snap: StateSnapshot,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    grad_scaler: Any = None,
) -> None:
    """Put back what :func:`snapshot_state` saved (values are copied into the live tensors)."""
    if model is not None and snap.model_state is not None:
        model.load_state_dict(snap.model_state, strict=True)
        buffers = dict(model.named_buffers())
        for name, buffer in snap.extra_buffers.items():
            _copy_into(buffers[name], buffer)
        for name, p in model.named_parameters():
            grad = snap.grads.get(name)
            if grad is None:
                p.grad = None
            elif p.grad is not None and p.grad.shape == grad.shape and p.grad.dtype == grad.dtype:
                _copy_into(p.grad, grad)
            else:
                p.grad = grad.to(p.device, copy=True)
        for name, m in model.named_modules():
            if name in snap.training:
                m.training = snap.training[name]
    if optimizer is not None and snap.optimizer_state is not None:
        _restore_optimizer(optimizer, snap.optimizer_state)
    if grad_scaler is not None and snap.scaler_state is not None:
        grad_scaler.load_state_dict(copy.deepcopy(snap.scaler_state))
        if snap.scaler_lazy and hasattr(grad_scaler, "_scale"):
            grad_scaler._scale = None
            grad_scaler._growth_tracker = None
        per_opt = getattr(grad_scaler, "_per_optimizer_states", None)
        if per_opt is not None and hasattr(per_opt, "clear"):
            per_opt.clear()
    if snap.rng:
        _set_rng_state(snap.rng)


@contextlib.contextmanager
def preserved_state(
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    grad_scaler: Any = None,
    *,
    rng: bool = True,
) -> Iterator[StateSnapshot]:
    """Run a block and then restore model, optimizer, scaler and RNG state exactly.

    The state is restored in ``finally``, so also when the block raises (the exception still
    propagates). The snapshot lives in host memory.
    """
    snap = snapshot_state(model, optimizer, grad_scaler, rng=rng)
    try:
        yield snap
    finally:
        restore_state(snap, model, optimizer, grad_scaler)
