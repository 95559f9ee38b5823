"""The range test leaves model, optimizer, GradScaler and RNG state exactly as it found them."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from lrlab.finder import preserved_state, range_test, snapshot_state


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3)
    )
    m.register_buffer("scratch", torch.zeros(2), persistent=False)  # not in state_dict
    return m


def _data(n: int = 256, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, :3] + 0.3 * torch.randn(n, 3, generator=g)).argmax(1)
    return x, y


def _warm_up(model, opt, x, y, steps: int = 3):
    """Give the optimizer real state (momentum buffers / moments) and BatchNorm real statistics."""
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:32]), y[:32]).backward()
        opt.step()
    # leave a gradient behind, as a user might
    nn.functional.cross_entropy(model(x[:16]), y[:16]).backward()


def _capture(model, opt, scaler=None):
    """Everything that must survive, cloned (so later in-place changes cannot alter it)."""

    def clone(o):
        if isinstance(o, torch.Tensor):
            return o.detach().clone()
        if isinstance(o, dict):
            return {k: clone(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return type(o)(clone(v) for v in o)
        return o

    return {
        "state_dict": clone(model.state_dict()),
        "buffers": {k: v.clone() for k, v in model.named_buffers()},
        "grads": {
            k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()
        },
        "param_ids": [id(p) for p in model.parameters()],
        "opt_param_ids": [id(p) for g in opt.param_groups for p in g["params"]],
        "training": {k: m.training for k, m in model.named_modules()},
        "opt": clone(opt.state_dict()),
        "scaler": None if scaler is None else (clone(scaler.state_dict()), scaler._scale is None),
        "py": random.getstate(),
        "np": np.random.get_state(),
        "torch": torch.get_rng_state().clone(),
    }


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def _assert_same(a, b, path="state"):
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device, path
        # bit for bit: compare the raw bytes, so that -0.0 vs 0.0 or NaN payloads would also show
        assert torch.equal(_bytes(a), _bytes(b)), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for k in a:
            _assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _check_unchanged(before, model, opt, scaler=None):
    after = _capture(model, opt, scaler)
    for key in before:
        _assert_same(before[key], after[key], key)


OPTIMIZERS = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3),
}


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_state_bit_for_bit_after_normal_return(opt_name):
    x, y = _data()
    model = _model()
    opt = OPTIMIZERS[opt_name](model.parameters())
    _warm_up(model, opt, x, y)
    model[3].eval()  # a sub-module in eval mode must stay so
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    before = _capture(model, opt)
    assert before["opt"]["state"], "the optimizer must have state for this test to mean anything"
    assert before["state_dict"]["1.num_batches_tracked"].item() == 4  # 3 steps + 1 extra forward

    res = range_test(
        model,
        opt,
        nn.CrossEntropyLoss(),
        (x, y),
        val_data=(x[:64], y[:64]),
        start_lr=1e-3,
        end_lr=1.0,
        steps=25,
        mode="exp",
        batch_size=32,
    )
    assert len(res) > 0
    # the test really trained: the recorded losses vary and BN saw batches
    assert np.ptp(res.loss) > 0
    _check_unchanged(before, model, opt)
    # and the RNGs continue exactly as if nothing had happened
    _check_unchanged_rng_sequence()


def _check_unchanged_rng_sequence():
    """After restoring, the next draws equal the draws of a freshly seeded generator."""
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    b = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert a == b


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_state_bit_for_bit_when_loss_raises_mid_test(opt_name):
    x, y = _data()
    model = _model()
    opt = OPTIMIZERS[opt_name](model.parameters())
    _warm_up(model, opt, x, y)
    before = _capture(model, opt)
    calls = {"n": 0}

    def exploding_loss(out, target):
        calls["n"] += 1
        if calls["n"] == 7:
            raise _Boom("loss failed mid-test")
        return nn.functional.cross_entropy(out, target)

    with pytest.raises(_Boom):
        range_test(
            model, opt, exploding_loss, (x, y), start_lr=1e-2, end_lr=1.0, steps=20, batch_size=32
        )
    assert calls["n"] == 7  # six optimizer steps really happened before the failure
    _check_unchanged(before, model, opt)


def test_state_restored_with_accumulation_repeats_and_grad_scaler():
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    _warm_up(model, opt, x, y)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    before = _capture(model, opt, scaler)
    assert before["scaler"][1] is True  # lazily uninitialised: must stay so
    res = range_test(
        model,
        opt,
        nn.CrossEntropyLoss(),
        (x, y),
        start_lr=1e-3,
        end_lr=3.0,
        steps=15,
        accumulation_steps=2,
        batch_size=16,
        repeats=2,
        grad_scaler=scaler,
    )
    assert len(res.runs) == 2
    _check_unchanged(before, model, opt, scaler)


def test_scaler_in_use_is_restored_exactly():
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=2)
    for _ in range(3):  # scale grows, growth tracker moves
        opt.zero_grad()
        scaler.scale(nn.functional.cross_entropy(model(x[:32]), y[:32])).backward()
        scaler.step(opt)
        scaler.update()
    before = _capture(model, opt, scaler)
    range_test(
        model,
        opt,
        nn.CrossEntropyLoss(),
        (x, y),
        start_lr=1e-3,
        end_lr=1.0,
        steps=12,
        grad_scaler=scaler,
    )
    _check_unchanged(before, model, opt, scaler)


def test_snapshot_lives_in_host_memory():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = _data()
    _warm_up(model, opt, x, y)
    snap = snapshot_state(model, opt)
    assert snap.devices() == {"cpu"}
    assert snap.nbytes() > 0
    # the snapshot is a copy, not a view of the live tensors
    live = next(model.parameters())
    assert all(t.data_ptr() != live.data_ptr() for t in snap.model_state.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_snapshot_on_host_and_restored():  # pragma: no cover - GPU machines only
    x, y = _data()
    model = _model().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _warm_up(model, opt, x.cuda(), y.cuda())
    cuda_rng = torch.cuda.get_rng_state_all()
    before = _capture(model, opt)
    with preserved_state(model, opt) as snap:
        assert snap.devices() == {"cpu"}
        range_test(
            model,
            opt,
            nn.CrossEntropyLoss(),
            (x.cuda(), y.cuda()),
            start_lr=1e-3,
            end_lr=1.0,
            steps=12,
        )
        torch.cuda.manual_seed_all(123)
    _check_unchanged(before, model, opt)
    assert all(torch.equal(a, b) for a, b in zip(cuda_rng, torch.cuda.get_rng_state_all()))


def test_preserved_state_restores_on_exception_and_reraises():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = _data()
    _warm_up(model, opt, x, y)
    before = _capture(model, opt)
    with pytest.raises(KeyError), preserved_state(model, opt):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        opt.param_groups[0]["lr"] = 123.0
        opt.param_groups[0]["extra_key"] = 1
        model.eval()
        torch.rand(5)
        raise KeyError("inside")
    _check_unchanged(before, model, opt)
