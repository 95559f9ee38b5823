"""Batches for the range test: a (x, y) tensor pair or any iterable of (x, y) batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from lrlab.errors import ConfigError

__all__ = [
    "batch_size_of",
    "check_data",
    "is_tensor_pair",
    "to_device",
    "train_batches",
    "val_batches",
    "validation_subset",
]

#: Streams drawn from one run's seed (independent of each other by SeedSequence's design).
VALIDATION_STREAM = 1


def stream_seed(seed: int, stream: int) -> int:
    """A seed for the ``stream``-th random stream of a run seeded with ``seed`` (NumPy's
    ``SeedSequence``: distinct seeds and streams give unrelated seeds)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


def is_tensor_pair(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    )


def check_data(data: Any, field: str, *, reiterable: str = "") -> None:
    """Raise ConfigError (before any training) when ``data`` is neither a tensor pair nor iterable
    (nor re-iterable, when ``reiterable`` says why it must be)."""
    if is_tensor_pair(data):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise ConfigError(
                f"{field}: x and y must have the same length, got {x.shape[0]} and {y.shape[0]}"
            )
        if x.shape[0] == 0:
            raise ConfigError(f"{field}: the tensors are empty")
        return
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise ConfigError(
            f"{field} must be an (x, y) pair of tensors or an iterable of (x, y) batches "
            f"(e.g. a DataLoader), got {type(data).__name__}"
        )
    if reiterable and isinstance(data, Iterator):
        raise ConfigError(
            f"{field} must be re-iterable ({reiterable}): a DataLoader, a list of batches or "
            f"an (x, y) pair, not a one-shot {type(data).__name__}"
        )


def split_batch(batch: Any, field: str) -> tuple[Any, Any]:
    if isinstance(batch, Mapping):
        for kx, ky in (("x", "y"), ("input", "target"), ("inputs", "targets")):
            if kx in batch and ky in batch:
                return batch[kx], batch[ky]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ConfigError(f"{field}: each batch must be an (x, y) tuple, got {type(batch).__name__}")


def batch_size_of(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return int(x.shape[0]) if x.ndim else 1
    if isinstance(x, (tuple, list)) and x:
        return batch_size_of(x[0])
    if isinstance(x, Mapping) and x:
        return batch_size_of(next(iter(x.values())))
    return 1


def to_device(obj: Any, device: torch.device | None) -> Any:
    if device is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device) for v in obj)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


class EndOfData(Exception):
    """A one-shot iterator ran out (it cannot be restarted)."""


def train_batches(data: Any, *, batch_size: int, seed: int) -> Iterator[tuple[Any, Any]]:
    """Endless training batches.

    A tensor pair is shuffled with its own ``torch.Generator`` seeded with ``seed`` (a fresh
    permutation every pass, ``drop_last`` so every batch has the same size; the global RNG is not
    used). An iterable is restarted with ``iter()`` whenever it runs out; a one-shot iterator that
    runs out raises :class:`EndOfData`; data that yields no batch at all is a ConfigError.
    """
    if is_tensor_pair(data):
        x, y = data
        n = int(x.shape[0])
        bs = min(batch_size, n)
        gen = torch.Generator().manual_seed(int(seed))
        while True:
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n - bs + 1, bs):
                idx = perm[i : i + bs].to(x.device)
                yield x[idx], y[idx]
    one_shot = isinstance(data, Iterator)
    it = iter(data)
    produced = False
    while True:
        try:
            batch = next(it)
        except StopIteration:
            if not produced:
                raise ConfigError("train_data yielded no batches") from None
            if one_shot:
                raise EndOfData from None
            it = iter(data)
            continue
        produced = True
        yield split_batch(batch, "train_data")


def validation_subset(data: Any, *, budget: int, seed: int) -> Any:
    """The validation samples one run evaluates, at every evaluation.

    A tensor pair with more than ``budget`` rows: ``budget`` rows drawn without replacement by a
    generator seeded from the run's ``seed`` (kept in their order), so repeats with other seeds
    see other validation points. Anything else is returned as is, and :func:`val_batches` reads
    its first ``budget`` samples (an iterable cannot be sampled without reading all of it).
    """
    if not is_tensor_pair(data) or int(data[0].shape[0]) <= budget:
        return data
    x, y = data
    gen = torch.Generator().manual_seed(stream_seed(seed, VALIDATION_STREAM))
    idx = torch.randperm(int(x.shape[0]), generator=gen)[:budget].sort().values
    return x[idx.to(x.device)], y[idx.to(y.device)]


def val_batches(data: Any, *, budget: int, batch_size: int) -> Iterator[tuple[Any, Any]]:
    """The first ``budget`` validation samples, in order (the same ones at every evaluation)."""
    seen = 0
    if is_tensor_pair(data):
        x, y = data
        n = min(int(x.shape[0]), budget)
        for i in range(0, n, batch_size):
            yield x[i : min(i + batch_size, n)], y[i : min(i + batch_size, n)]
        return
    for batch in data:
        bx, by = split_batch(batch, "val_data")
        k = batch_size_of(bx)
        if seen + k > budget:
            keep = budget - seen
            if keep <= 0:
                break
            if isinstance(bx, torch.Tensor) and isinstance(by, torch.Tensor):
                bx, by = bx[:keep], by[:keep]
                k = keep
        yield bx, by
        seen += k
        if seen >= budget:
            break
