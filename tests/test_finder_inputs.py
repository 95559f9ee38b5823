"""Hostile input to ``range_test``: one line, never a traceback, the state as it was (issue 12);
a tensor learning rate keeps its identity; repeats differ in data order and validation points."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
import torch
from helpers import fuzz_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lrlab.errors import ConfigError
from lrlab.finder import range_test

#: ``LRLAB_FUZZ_EXAMPLES=10000 pytest tests/test_finder_inputs.py`` for a long run.
EXAMPLES = fuzz_examples(300)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: torch's thread pool costs ~20x the work on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _model_opt(lr=0.05):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def _state(model, opt):
    """What must survive a range test, cloned."""
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "opt": copy.deepcopy(opt.state_dict()),
        "torch_rng": torch.get_rng_state().clone(),
        "np_rng": np.random.get_state()[1].copy(),
        "py_rng": random.getstate(),
    }


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


# ------------------------------------------------------------------ a tensor learning rate


def test_tensor_lr_is_filled_in_place_and_keeps_its_identity():
    x, y = _data()
    model, _ = _model_opt()
    lr = torch.tensor(0.05)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    seen = []
    orig = opt.step
    opt.step = lambda *a, **k: (seen.append((opt.param_groups[0]["lr"] is lr, float(lr))), orig())[
        1
    ]
    res = range_test(model, opt, nn.CrossEntropyLoss(), (x, y), start_lr=1e-3, end_lr=0.1, steps=10)
    del opt.step
    assert all(same for same, _ in seen)  # the test itself filled the user's tensor
    assert [v for _, v in seen] == pytest.approx(res.lr.tolist())
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.05)  # restored in place
    lr.fill_(0.2)  # the user's own fill_ still reaches the optimizer
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(0.2)


def test_tensor_hyper_parameters_of_adam_keep_their_identity():
    x, y = _data()
    model, _ = _model_opt()
    lr = torch.tensor(1e-3)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    range_test(
        model, opt, nn.CrossEntropyLoss(), (x, y), start_lr=1e-4, end_lr=0.1, steps=10, repeats=2
    )
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(1e-3)


# ------------------------------------------------------------------ what loss_fn returns


@pytest.mark.parametrize(
    "loss_fn,says",
    [
        (lambda o, t: nn.functional.cross_entropy(o, t).item(), "got float"),
        (lambda o, t: nn.functional.cross_entropy(o, t, reduction="none"), "got shape (16,)"),
        (lambda o, t: nn.functional.cross_entropy(o.detach(), t), "requires grad"),
        (lambda o, t: None, "got NoneType"),
    ],
    ids=["float", "per_sample", "detached", "none"],
)
def test_loss_fn_that_is_not_a_scalar_tensor_gets_one_line(loss_fn, says):
    x, y = _data()
    model, opt = _model_opt()
    before = _state(model, opt)
    with pytest.raises(ConfigError) as err:
        range_test(model, opt, loss_fn, (x, y), start_lr=1e-3, end_lr=0.1, steps=10, batch_size=16)
    message = str(err.value)
    assert "\n" not in message and "loss_fn" in message and says in message
    assert _same(before, _state(model, opt))


@pytest.mark.parametrize(
    ("train_data", "repeats", "says"),
    [
        (lambda b: iter([]), 1, "train_data yielded no batches"),
        (lambda b: [], 1, "train_data yielded no batches"),
        (lambda b: iter(b), 2, "train_data must be re-iterable (each of the repeated runs"),
    ],
    ids=["empty_iterator", "empty_list", "one_shot_repeated"],
)
def test_data_without_batches_for_every_run_gets_one_line(train_data, repeats, says):
    """An empty one-shot iterator was accepted (0 points, "end_of_data"); a one-shot iterator
    would leave every repeat after the first without a batch."""
    x, y = _data()
    batches = [(x[:20], y[:20]), (x[20:], y[20:])]
    model, opt = _model_opt()
    before = _state(model, opt)
    with pytest.raises(ConfigError) as err:
        range_test(
            model,
            opt,
            nn.functional.cross_entropy,
            train_data(batches),
            start_lr=1e-3,
            end_lr=0.1,
            steps=10,
            repeats=repeats,
        )
    assert "\n" not in str(err.value) and says in str(err.value)
    assert _same(before, _state(model, opt))


def test_validation_loss_is_checked_too():
    x, y = _data()
    model, opt = _model_opt()

    def loss_fn(o, t):  # a tensor while training, a float in evaluation (no grad)
        loss = nn.functional.cross_entropy(o, t)
        return loss if torch.is_grad_enabled() else loss.item()

    with pytest.raises(ConfigError, match="loss_fn must return a scalar tensor, got float"):
        range_test(
            model, opt, loss_fn, (x, y), val_data=(x, y), start_lr=1e-3, end_lr=0.1, steps=10
        )


# ------------------------------------------------------------------ repeats differ


def test_repeats_see_other_validation_points_and_the_same_ones_within_a_run():
    x, y = _data(n=300)
    model, opt = _model_opt()
    ids = torch.arange(300, dtype=torch.float32)
    fns = {"ids": lambda out, t: float(t.sum())}  # val_ids = the sum of the evaluated ids

    def run(seeds):
        return range_test(
            model,
            opt,
            lambda o, t: nn.functional.cross_entropy(o, y[t.long()]),
            (x, ids),
            val_data=(x, ids),
            start_lr=1e-3,
            end_lr=0.01,
            steps=12,
            val_every=3,
            val_samples=50,
            val_batch_size=50,
            metrics=fns,
            seeds=seeds,
        )

    res = run([0, 1, 2])
    sums = []
    for r in res.runs:
        v = r.metrics["val_ids"][np.isfinite(r.metrics["val_ids"])]
        assert len(v) >= 4 and np.all(v == v[0])  # one subset per run, at every evaluation
        sums.append(v[0] / 50)  # mean id of the subset
    assert len(set(sums)) == 3  # each run its own subset
    assert sums[0] != pytest.approx(np.mean(np.arange(50)))  # not simply the first 50
    again = run([1])
    assert again.metrics["val_ids"][0] / 50 == sums[1]  # deterministic from the seed


def test_identical_repeats_are_flagged():
    x, y = _data(n=200)
    model, opt = _model_opt()
    kw = dict(start_lr=1e-3, end_lr=1.0, steps=30, batch_size=20)
    same = range_test(model, opt, nn.CrossEntropyLoss(), (x, y), seeds=[4, 4], **kw)
    assert "identical_repeats" in same.suggest().codes
    other = range_test(model, opt, nn.CrossEntropyLoss(), (x, y), seeds=[4, 5], **kw)
    assert "identical_repeats" not in other.suggest().codes


def test_reasons_quote_the_median_they_report():
    x, y = _data(n=400)
    model, opt = _model_opt()
    res = range_test(
        model,
        opt,
        nn.CrossEntropyLoss(),
        (x[:300], y[:300]),
        val_data=(x[300:], y[300:]),
        start_lr=1e-3,
        end_lr=30.0,
        steps=60,
        mode="exp",
        repeats=3,
        batch_size=30,
        val_every=1,
    )
    sug = res.suggest()
    singles = [r.suggest(bootstrap=0) for r in res.runs]
    for key in ("base_lr", "max_lr", "lr", "valley", "steep", "minimum"):
        value = sug.fastai[key] if key in sug.fastai else getattr(sug, key)
        reason = sug.reasons[key]
        assert reason.startswith(f"median of 3 runs = {value:.4g} (runs: "), (key, reason)
        for s in singles:
            run_value = s.fastai[key] if key in s.fastai else getattr(s, key)
            assert f"{run_value:.4g}" in reason


# ------------------------------------------------------------------ hostile input, fuzzed

NAN, INF = float("nan"), float("inf")
x40, y40 = _data()
BAD = {
    "start_lr": [NAN, INF, -1.0, "0.1", None, True, [0.1], 10**400, 2.0, np.array([1.0, 2.0])],
    "end_lr": [NAN, INF, -INF, 0.0, "1", None, False, 10**400],
    "steps": [0, 9, -5, 10**12, 10**400, 10.0, "10", True, None, 2**53 + 1, INF],
    "mode": ["cosine", None, 3, ["linear"], "", b"exp", np.array(["exp", "linear"])],
    "batch_size": [0, -1, 1.5, "16", None, True, 10**400],
    "accumulation_steps": [0, -1, 2.5, None],
    "seed": [-1, 1.5, "0", None, 10**400, 2**64],
    "repeats": [0, -1, 10**9, 1.0, None],
    "seeds": [[], "012", [-1], [1.5], 5, {"a": 1}, [None], list(range(2000))],
    "ema_beta": [1.0, -0.1, NAN, INF, "0.9", None, True],
    "diverge_factor": [1.0, 0.5, NAN, INF, -INF, "4", True],
    "val_every": [0, -1, 1.5, "1"],
    "val_samples": [0, -2, None, 1.5],
    "val_batch_size": [0, -1, 2.5, "a"],
    "metrics": ["accuracy", 3, {"a": 3}, ["auto"], {1: len}],
    "clip_grad_norm": [0.0, -1.0, NAN, INF, "1"],
    "device": ["tpu", 99, "cuda:99", object(), ""],
    "progress": ["yes", 1, None],
    "grad_scaler": [3, "scaler", object()],
    "train_data": [
        None,
        42,
        "data",
        {},
        (torch.zeros(5, 4), torch.zeros(4)),
        (torch.zeros(0, 4), torch.zeros(0)),
        [],
        iter([]),
        [(1,)],
        [torch.zeros(3, 4)],
    ],
    "val_data": [42, "x", iter([]), (torch.zeros(0, 4), torch.zeros(0)), {"x": 1}],
    "loss_fn": [
        None,
        3,
        "mse",
        lambda o, t: 0.5,
        lambda o, t: nn.functional.cross_entropy(o, t, reduction="none"),
        lambda o, t: nn.functional.cross_entropy(o, t).detach(),
    ],
    "model": [None, "model", lambda v: v],
    "optimizer": [None, "sgd", object()],
}
GOOD = {
    "start_lr": [1e-3, 0.0, np.float32(1e-3)],
    "end_lr": [1.0, 0.5, np.float64(2.0)],
    "steps": [10, 12, np.int64(11)],
    "mode": ["linear"],
    "batch_size": [16, 64, 10**400 // 10**399],
    "accumulation_steps": [1, 2],
    "seed": [0, 7, np.int32(3)],
    "repeats": [1, 2],
    "seeds": [None, [0, 1], np.array([2, 3])],
    "ema_beta": [0.9, 0.0, 0],
    "diverge_factor": [4.0, None, 2],
    "val_every": [None, 1, 5],
    "val_samples": [1024, 7],
    "val_batch_size": [None, 3],
    "metrics": ["auto", None, {"mean_out": lambda o, t: float(o.mean())}],
    "clip_grad_norm": [None, 1.0],
    "device": [None, "cpu", torch.device("cpu")],
    "progress": [False],
    "grad_scaler": [None],
    "train_data": [(x40, y40), [(x40[:20], y40[:20]), (x40[20:], y40[20:])]],
    "val_data": [None, (x40, y40)],
    "loss_fn": [nn.CrossEntropyLoss()],
    "model": ["default"],
    "optimizer": ["default"],
}


@st.composite
def arguments(draw):
    bad = draw(st.sets(st.sampled_from(sorted(BAD)), max_size=3))
    args = {name: draw(st.sampled_from(BAD[name] if name in bad else GOOD[name])) for name in GOOD}
    if isinstance(args["train_data"], type(iter([]))):
        args["train_data"] = iter([])  # a fresh one-shot iterator for every example
    return bad, args


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(arguments())
def test_bad_input_is_one_line_and_leaves_the_state_as_it_was(drawn):
    bad, args = drawn
    model, opt = _model_opt()
    nn.functional.cross_entropy(model(x40[:8]), y40[:8]).backward()  # a gradient left behind
    before = _state(model, opt)
    live = {"model": model, "optimizer": opt}
    for name in live:  # "default" stands for the live object (a strategy cannot hold it)
        if isinstance(args[name], str) and args[name] == "default":
            args[name] = live[name]
    pos = [args.pop(k) for k in ("model", "optimizer", "loss_fn", "train_data")]
    try:
        res = range_test(*pos, **args)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 400, message
    else:
        assert not bad, f"accepted bad {sorted(bad)}"
        assert all(math.isfinite(v) and v >= 0 for r in res.runs for v in r.lr)
    assert _same(before, _state(model, opt))
