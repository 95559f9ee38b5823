"""Stacked networks for :mod:`lrlab.lab.batched`: K copies of one architecture as one computation.

The parameters of K trials live in one flat tensor ``(K, P)`` (row k is trial k's parameters in
``model.parameters()`` order, each flattened), so an optimizer update is a handful of tensor
operations for all trials and all layers at once. A *net* turns that flat tensor plus a batch per
trial into per-trial losses, correct counts and the flat gradient ``(K, P)``.

Two engines, chosen per model by measurement (``benchmarks/batched_trials.py``):

* ``"bmm"``: forward *and* backward written by hand as batched matrix products. A Conv1d is
  unfold (a strided view) + ``bmm``; its input gradient is ``bmm`` + fold (K strided adds). No
  autograd graph is built, which is what pays on a CPU where these models are overhead-bound.
* ``"vmap"``: ``torch.func.vmap`` over ``grad_and_value`` of ``functional_call``: works for any
  stateless module (no buffers), measured slower for the lab's CNN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from lrlab.lab.models import MNIST1DCNN, MNIST1DMLP


@dataclass(frozen=True)
class ParamLayout:
    """Where each named parameter sits in a flat ``(K, P)`` row: ``(name, shape, offset)``."""

    entries: tuple[tuple[str, tuple[int, ...], int], ...]
    size: int

    @classmethod
    def of(cls, model: nn.Module) -> ParamLayout:
        entries, offset = [], 0
        for name, p in model.named_parameters():
            entries.append((name, tuple(p.shape), offset))
            offset += p.numel()
        return cls(tuple(entries), offset)

    def stack(self, models: Sequence[nn.Module]) -> torch.Tensor:
        """``(K, P)``: row k is ``models[k]``'s parameters, bit for bit."""
        rows = [torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in models]
        return torch.stack(rows)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-parameter views ``(K, *shape)`` of ``flat`` (no copy)."""
        k = flat.shape[0]
        return {
            name: flat[:, off : off + math.prod(shape)].view(k, *shape)
            for name, shape, off in self.entries
        }

    def state_dict(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """One trial's ``state_dict`` (copies) from its flat row ``(P,)``."""
        return {
            name: row[off : off + math.prod(shape)].reshape(shape).clone()
            for name, shape, off in self.entries
        }


class BatchedNet(Protocol):
    """What the batched trainer needs from a stacked architecture."""

    layout: ParamLayout

    def loss_and_grad(
        self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-trial mean cross-entropy ``(K,)``, correct counts ``(K,)`` and the gradient of
        each trial's loss w.r.t. its own parameters ``(K, P)``; ``x`` is ``(K, b, *input)``."""
        ...

    def logits(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(K, n, classes)`` for inputs ``x`` ``(n, *input)`` shared by every trial."""
        ...


# --------------------------------------------------------------------------------------------
# The loss, by hand


def cross_entropy_and_grad(
    logits: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-trial mean cross-entropy ``(K,)``, correct counts ``(K,)`` and d(loss_k)/d(logits_k)
    ``(softmax - onehot) / b`` for ``logits`` ``(K, b, C)`` and labels ``y`` ``(K, b)``."""
    logp = torch.log_softmax(logits, -1)
    loss = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1)
    grad = logp.exp_().sub_(F.one_hot(y, logits.shape[-1])).div_(logits.shape[1])
    correct = (logits.argmax(-1) == y).sum(1)
    return loss, correct, grad


def _relu_grad(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    # autograd's own ReLU backward (zero where the output is not positive)
    return torch.ops.aten.threshold_backward(grad, out, 0)


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h @ w^T + b`` per trial: h ``(K, n, in)``, w ``(K, out, in)``, b ``(K, out)``."""
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


def _linear_grads(g: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dW, db)`` of :func:`_linear` for the output gradient ``g``; ``dh`` is ``g @ w``."""
    return torch.bmm(g.transpose(1, 2), h), g.sum(1)


# --------------------------------------------------------------------------------------------
# The MNIST-1D MLP


class BmmMLP:
    """:class:`~lrlab.lab.models.MNIST1DMLP` (``h = relu(W1 x); h = h + relu(W2 h); W3 h``)
    for K trials, forward and backward by hand."""

    def __init__(self, model: MNIST1DMLP):
        self.layout = ParamLayout.of(model)

    def _forward(self, p: dict[str, torch.Tensor], x: torch.Tensor):
        h1 = _linear(x.flatten(2), p["linear1.weight"], p["linear1.bias"]).relu_()
        r2 = _linear(h1, p["linear2.weight"], p["linear2.bias"]).relu_()
        h2 = h1 + r2
        return _linear(h2, p["linear3.weight"], p["linear3.bias"]), (h1, r2, h2)

    def loss_and_grad(self, flat, x, y):
        p = self.layout.views(flat)
        x = x.flatten(2)
        logits, (h1, r2, h2) = self._forward(p, x)
        loss, correct, g = cross_entropy_and_grad(logits, y)
        dw3, db3 = _linear_grads(g, h2)
        dh2 = torch.bmm(g, p["linear3.weight"])
        da2 = _relu_grad(dh2, r2)
        dw2, db2 = _linear_grads(da2, h1)
        da1 = _relu_grad(torch.baddbmm(dh2, da2, p["linear2.weight"]), h1)  # residual + branch
        dw1, db1 = _linear_grads(da1, x)
        grads = (dw1, db1, dw2, db2, dw3, db3)  # the order of model.parameters()
        return loss, correct, torch.cat([t.flatten(1) for t in grads], 1)

    def logits(self, flat, x):
        p = self.layout.views(flat)
        return self._forward(p, x.flatten(1).expand(flat.shape[0], -1, -1))[0]


# --------------------------------------------------------------------------------------------
# The MNIST-1D CNN


@dataclass(frozen=True)
class _Conv:
    """One Conv1d's geometry; activations are channels-last ``(K, b, length, channels)``."""

    name: str
    kernel: int
    stride: int
    padding: int

    def patches(self, h: torch.Tensor) -> torch.Tensor:
        """``(K, b * L_out, C * kernel)`` with column index ``c * kernel + j``: the flattening of
        torch's Conv1d weight ``(out, C, kernel)``, so the weight needs no permutation."""
        k, c = h.shape[0], h.shape[3]
        padded = F.pad(h, (0, 0, self.padding, self.padding))
        return padded.unfold(2, self.kernel, self.stride).reshape(k, -1, c * self.kernel)

    def out_len(self, length: int) -> int:
        return (length + 2 * self.padding - self.kernel) // self.stride + 1

    def fold(self, dp: torch.Tensor, length: int, channels: int) -> torch.Tensor:
        """The adjoint of :meth:`patches`: ``(K, b * L_out, C * kernel)`` -> ``(K, b, L, C)``."""
        k, n_out = dp.shape[0], self.out_len(length)
        dp = dp.view(k, -1, n_out, channels, self.kernel)
        out = dp.new_zeros(k, dp.shape[1], length + 2 * self.padding, channels)
        end = self.stride * (n_out - 1) + 1
        for j in range(self.kernel):
            out[:, :, j : j + end : self.stride, :] += dp[..., j]
        return out[:, :, self.padding : self.padding + length, :]


class BmmCNN:
    """:class:`~lrlab.lab.models.MNIST1DCNN` for K trials: each Conv1d as unfold + ``bmm``,
    channels-last activations, forward and backward by hand. The classifier's weight is
    permuted once per step to the channels-last flattening (its gradient back)."""

    def __init__(self, model: MNIST1DCNN):
        self.layout = ParamLayout.of(model)
        self.convs = [
            _Conv(name, m.kernel_size[0], m.stride[0], int(m.padding[0]))
            for name, m in (("conv1", model.conv1), ("conv2", model.conv2), ("conv3", model.conv3))
        ]
        self.channels = model.conv1.out_channels
        self.classes = model.linear.out_features

    def _classifier_weight(self, w: torch.Tensor) -> torch.Tensor:
        # torch flattens (C, L) features as c * L + l; ours are (L, C): l * C + c
        k = w.shape[0]
        return (
            w.view(k, self.classes, self.channels, -1).transpose(2, 3).reshape(k, self.classes, -1)
        )

    def _forward(self, p: dict[str, torch.Tensor], x: torch.Tensor):
        k, b = x.shape[:2]
        h = x.reshape(k, b, -1, 1)
        saved = []
        for conv in self.convs:
            cols = conv.patches(h)
            w = p[f"{conv.name}.weight"].flatten(2)
            out = _linear(cols, w, p[f"{conv.name}.bias"]).relu_()
            saved.append((cols, out, h.shape[2], h.shape[3]))
            h = out.view(k, b, conv.out_len(h.shape[2]), -1)
        feats = h.reshape(k, b, -1)
        w_lin = self._classifier_weight(p["linear.weight"])
        return _linear(feats, w_lin, p["linear.bias"]), saved, feats, w_lin

    def loss_and_grad(self, flat, x, y):
        p = self.layout.views(flat)
        k = x.shape[0]
        logits, saved, feats, w_lin = self._forward(p, x)
        loss, correct, g = cross_entropy_and_grad(logits, y)
        dw_lin, db_lin = _linear_grads(g, feats)
        dh = torch.bmm(g, w_lin)
        dw_lin = dw_lin.view(k, self.classes, -1, self.channels).transpose(2, 3)
        grads: list[torch.Tensor] = [dw_lin, db_lin]
        for i in reversed(range(len(self.convs))):
            conv, (cols, out, length, c_in) = self.convs[i], saved[i]
            da = _relu_grad(dh.reshape(out.shape), out)
            grads[:0] = _linear_grads(da, cols)
            if i > 0:  # no gradient for the input signal
                dcols = torch.bmm(da, p[f"{conv.name}.weight"].flatten(2))
                dh = conv.fold(dcols, length, c_in)
        return loss, correct, torch.cat([t.reshape(k, -1) for t in grads], 1)

    def logits(self, flat, x):
        return self._forward(self.layout.views(flat), x.expand(flat.shape[0], *x.shape))[0]


# --------------------------------------------------------------------------------------------
# The generic engine: torch.func


class VmapNet:
    """Any module without buffers, K at a time with ``torch.func.vmap`` over
    ``grad_and_value(functional_call)``; autograd does the backward."""

    def __init__(self, model: nn.Module):
        if any(True for _ in model.buffers()):
            raise ValueError("VmapNet: models with buffers (BatchNorm) are not supported")
        self.layout = ParamLayout.of(model)
        self.model = model

        def loss(params, x, y):
            out = torch.func.functional_call(self.model, params, (x,))
            return F.cross_entropy(out, y), out

        self._grad = torch.func.vmap(torch.func.grad_and_value(loss, has_aux=True))
        self._logits = torch.func.vmap(
            lambda params, x: torch.func.functional_call(self.model, params, (x,)),
            in_dims=(0, None),
        )

    def loss_and_grad(self, flat, x, y):
        grads, (loss, out) = self._grad(self.layout.views(flat), x, y)
        correct = (out.argmax(-1) == y).sum(1)
        flat_grad = torch.cat([grads[n].flatten(1) for n, _, _ in self.layout.entries], 1)
        return loss.detach(), correct, flat_grad

    def logits(self, flat, x):
        with torch.no_grad():
            return self._logits(self.layout.views(flat), x)


#: Engines by name; ``"bmm"`` has one hand-written net per supported model class.
BMM_NETS: dict[type, type] = {MNIST1DMLP: BmmMLP, MNIST1DCNN: BmmCNN}


def make_net(model: nn.Module, engine: str = "bmm") -> BatchedNet:
    """The stacked version of ``model``'s architecture (``model`` itself is not modified; the
    vmap engine keeps it as the template for ``functional_call``)."""
    if engine == "vmap":
        return VmapNet(model)
    cls = BMM_NETS.get(type(model))
    if cls is None:
        raise ValueError(f"no hand-written batched net for {type(model).__name__}")
    return cls(model)
