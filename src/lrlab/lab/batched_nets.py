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
    ``(softmax - onehot) / b`` for ``logits`` ``(K, b, C)`` and labels ``y`` ``(K, b)``.

    >>> loss, correct, grad = cross_entropy_and_grad(torch.zeros(1, 2, 2), torch.tensor([[0, 1]]))
    >>> loss.tolist(), correct.tolist(), grad.tolist()
    ([0.6931], [1], [[[-0.25, 0.25], [0.25, -0.25]]])
    """
    logp = torch.log_softmax(logits, -1)
    loss = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1)
    grad = logp.exp().div_(logits.shape[1])
    grad.scatter_add_(
        -1, y.unsqueeze(-1), grad.new_full((1, 1, 1), -1.0 / logits.shape[1]).expand(*y.shape, 1)
    )
    correct = (logits.argmax(-1) == y).sum(1)
    return loss, correct, grad


def _relu_grad(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    # autograd's own ReLU backward (zero where the output is not positive)
    return torch.ops.aten.threshold_backward(grad, out, 0)


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h @ w^T + b`` per trial: h ``(K, n, in)``, w ``(K, out, in)``, b ``(K, out)``."""
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


def _weight_grad(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``g^T h`` ``(K, out, in)``, computed as ``(h^T g)^T`` when ``in < out``: MKL's small
    products run faster with the wider matrix as the output's rows (measured)."""
    if h.shape[2] < g.shape[2]:
        return torch.bmm(h.transpose(1, 2), g).transpose(1, 2)
    return torch.bmm(g.transpose(1, 2), h)


def _linear_grads(g: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dW, db)`` of :func:`_linear` for the output gradient ``g``; ``dh`` is ``g @ w``."""
    return _weight_grad(g, h), g.sum(1)


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
    """One Conv1d's geometry. Activations are channels-last ``(K, b, length, channels)`` and
    patch columns are ordered ``j * C + c`` (tap-major), so that the patch copy and the fold
    move contiguous runs of C channels; the weight is permuted to match (a small copy)."""

    name: str
    kernel: int
    stride: int
    padding: int

    def out_len(self, length: int) -> int:
        return (length + 2 * self.padding - self.kernel) // self.stride + 1

    def weight(self, w: torch.Tensor) -> torch.Tensor:
        """torch's ``(K, out, C, kernel)`` as ``(K, out, kernel * C)``."""
        return w.transpose(2, 3).reshape(w.shape[0], w.shape[1], -1)

    def weight_grad(self, dw: torch.Tensor, channels: int) -> torch.Tensor:
        """The inverse of :meth:`weight`, for a gradient: back to ``(K, out, C, kernel)``."""
        return dw.view(dw.shape[0], dw.shape[1], self.kernel, channels).transpose(2, 3)

    def patches(self, h: torch.Tensor) -> torch.Tensor:
        """``(K, b * L_out, kernel * C)``: row ``(i, p)`` holds positions ``stride * p + j -
        padding`` (zero outside the signal) of sample i."""
        k, c = h.shape[0], h.shape[3]
        padded = F.pad(h, (0, 0, self.padding, self.padding))
        cols = padded.unfold(2, self.kernel, self.stride).transpose(3, 4)
        return cols.reshape(k, -1, self.kernel * c)

    def fold(self, dp: torch.Tensor, length: int) -> torch.Tensor:
        """The adjoint of :meth:`patches`: ``(K, b * L_out, kernel * C)`` -> ``(K, b, L, C)``,
        contiguous (one strided add per tap into the positions it read)."""
        k, n_out = dp.shape[0], self.out_len(length)
        dp = dp.view(k, -1, n_out, self.kernel, dp.shape[2] // self.kernel)
        out = dp.new_zeros(k, dp.shape[1], length, dp.shape[4])
        for j in range(self.kernel):
            # outputs p read position l = stride * p + j - padding; keep those inside [0, L)
            first = max(0, -(-(self.padding - j) // self.stride))
            last = min(n_out, (length - 1 + self.padding - j) // self.stride + 1)
            if last > first:
                lo = self.stride * first + j - self.padding
                hi = self.stride * (last - 1) + j - self.padding + 1
                out[:, :, lo : hi : self.stride, :] += dp[:, :, first:last, j, :]
        return out


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
            w = conv.weight(p[f"{conv.name}.weight"])
            out = _linear(cols, w, p[f"{conv.name}.bias"]).relu_()
            saved.append((cols, out, w, h.shape[2], h.shape[3]))
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
            conv, (cols, out, w, length, c_in) = self.convs[i], saved[i]
            da = _relu_grad(dh.view(out.shape), out)
            dw = _weight_grad(da, cols)
            grads[:0] = [conv.weight_grad(dw, c_in), da.sum(1)]
            if i > 0:  # no gradient for the input signal
                dh = conv.fold(torch.bmm(da, w), length)
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
