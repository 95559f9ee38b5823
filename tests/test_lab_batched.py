"""Batched trials (lrlab.lab.batched): the same training as one by one, K trials at a time.

Tolerances, and why: batched products sum in another order than torch's per-model kernels, so
the last bits of every number differ, and training amplifies them. Exact: initial weights, batch
orders, learning rates (the same floats). Forward/backward and optimizer updates against autograd
and torch.optim: 1e-5 / 1e-6 relative. Whole trials (3 epochs of a small MNIST-1D):
losses within 1e-3 relative and accuracies within 0.02 (4 of 200 test signals) per trial.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import BATCH, numbers, spec_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrlab.errors import ConfigError
from lrlab.lab import batched as B
from lrlab.lab import tasks as T
from lrlab.lab.batched_nets import BmmCNN, BmmMLP, ParamLayout, VmapNet, make_net
from lrlab.lab.batched_optim import make_batched_optimizer
from lrlab.lab.models import build_model
from lrlab.lab.trainer import (
    TrialResult,
    TrialSpec,
    derive_seed,
    evaluate,
    iterations_per_epoch,
    normalize_optimizer,
    train_trial,
)
from lrlab.schedules import from_config
from lrlab.torch import Scheduler, set_hyperparam

CPU = torch.device("cpu")


STEPS = iterations_per_epoch(720, BATCH)
SCHEDULES = [
    {"type": "cosine", "lr": 0.05, "total": 3 * STEPS},
    {"type": "constant", "lr": 0.02},
    {"type": "cyclic", "mode": "triangular2", "base_lr": 0.005, "max_lr": 0.05, "step_size_up": 7},
    {  # a metric-driven policy: the default study's seq4 by cutoff
        "type": "policy",
        "trigger": "cutoff",
        "rate": 0.01,
        "shrink": 0.2,
        "values": {"type": "sequence", "kind": "seq4", "lr": 0.05},
    },
]


# --------------------------------------------------------------------------------------------
# exact: initial weights, batch orders, learning rates


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_initial_weights_are_those_of_train_trial(task, model):
    specs = [spec_for(model=model, seed=s) for s in (0, 1, 7)]
    stack = B._build_stack(specs, task, CPU, "bmm")
    for row, spec in zip(stack.flat, specs):
        torch.manual_seed(spec.seed)  # what train_trial does right before build_model
        expected = build_model(model, task).state_dict()
        got = stack.net.layout.state_dict(row)
        assert list(got) == list(expected)
        assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_batch_orders_are_those_of_train_trial(task):
    specs = [spec_for(seed=s) for s in (0, 3)]
    stack = B._build_stack(specs, task, CPU, "bmm")
    n = len(task.y_train)
    # train_trial's generators, advanced epoch by epoch alongside the batch's
    gens = [torch.Generator().manual_seed(derive_seed(s.seed, "batch-order")) for s in specs]
    for _ in range(2):
        run = B._start_epoch(stack, n, iterations_per_epoch(n, BATCH), per_step=True)
        for gen, perm in zip(gens, run.perms):
            assert torch.equal(perm, torch.randperm(n, generator=gen))


def test_mini_batches_are_those_of_train_trial(task, monkeypatch):
    """The inputs each trial trains on, step by step over two epochs, are bit for bit those
    train_trial feeds its model (recorded on both sides)."""
    import lrlab.lab.models as M

    specs = [spec_for(seed=s, epochs=2, model="mlp") for s in (0, 3)]
    one_by_one: list[list[torch.Tensor]] = []
    real_build = M.build_model

    def recording_build(name, task_):
        model, inputs = real_build(name, task_), []
        one_by_one.append(inputs)
        model.register_forward_pre_hook(
            lambda m, args: inputs.append(args[0]) if m.training else None
        )
        return model

    monkeypatch.setattr(M, "build_model", recording_build)
    for spec in specs:
        train_trial(spec, task=task)
    monkeypatch.setattr(M, "build_model", real_build)

    batched: list[torch.Tensor] = []
    real_make = B.make_net

    def recording_make(model, engine):
        net = real_make(model, engine)
        real_step = net.loss_and_grad
        net.loss_and_grad = lambda flat, x, y: (batched.append(x), real_step(flat, x, y))[1]
        return net

    monkeypatch.setattr(B, "make_net", recording_make)
    B.train_trials(specs, task=task)
    assert len(batched) == len(one_by_one[0]) == 2 * STEPS
    for step, x in enumerate(batched):
        for k in range(len(specs)):
            assert torch.equal(x[k], one_by_one[k][step])


@pytest.mark.parametrize("config", SCHEDULES)
def test_trial_rate_steps_like_the_scheduler(config):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    sched = Scheduler(opt, from_config(config))
    rate = B.TrialRate(from_config(config))
    got, expected = [], []
    for epoch in range(4):
        for _ in range(5):
            expected.append(float(opt.param_groups[0]["lr"]))
            sched.step()
        got += rate.epoch_lrs(5, per_step=True)
        metric = 2.0 / (1 + epoch) ** 2
        sched.step(metric)
        rate.observe(metric)
    assert got == expected


# --------------------------------------------------------------------------------------------
# forward / backward against autograd, updates against torch.optim


def _autograd(model, x, y):
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return loss, torch.cat([g.reshape(-1) for g in grads]), logits


@pytest.mark.parametrize("model,engine", [("mlp", "bmm"), ("cnn", "bmm"), ("cnn", "vmap")])
def test_loss_and_gradient_equal_autograd(task, model, engine):
    torch.manual_seed(0)
    models = [build_model(model, task) for _ in range(3)]
    net = make_net(models[0], engine)
    flat = ParamLayout.of(models[0]).stack(models)
    x, y = torch.randn(3, 17, 40), torch.randint(0, 10, (3, 17))
    loss, correct, grad = net.loss_and_grad(flat, x, y)
    for k, m in enumerate(models):
        ref_loss, ref_grad, logits = _autograd(m, x[k], y[k])
        assert loss[k].item() == pytest.approx(ref_loss.item(), rel=1e-5)
        torch.testing.assert_close(grad[k], ref_grad, rtol=1e-5, atol=1e-7)
        assert correct[k].item() == (logits.argmax(1) == y[k]).sum().item()
    shared = torch.randn(9, 40)
    out = net.logits(flat, shared)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m(shared).detach(), rtol=1e-5, atol=1e-6)


def test_bmm_nets_are_chosen_for_the_lab_models(task):
    assert isinstance(make_net(build_model("mlp", task)), BmmMLP)
    assert isinstance(make_net(build_model("cnn", task)), BmmCNN)
    assert isinstance(make_net(build_model("cnn", task), "vmap"), VmapNet)


OPTIMIZERS = [
    [{"type": "sgd", "momentum": 0.0}],
    [{"type": "sgd", "momentum": 0.9, "weight_decay": 5e-4}, {"type": "sgd", "momentum": 0.5}],
    [{"type": "sgd", "momentum": 0.9, "dampening": 0.3, "weight_decay": 1e-2}],
    [{"type": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}],
    [{"type": "adam"}, {"type": "adam", "betas": [0.8, 0.99], "eps": 1e-6}],
    [{"type": "adam", "weight_decay": 1e-2, "amsgrad": True}],
    [{"type": "adamw"}, {"type": "adamw", "weight_decay": 0.1, "betas": [0.5, 0.9]}],
    [{"type": "adamw", "amsgrad": True}],
]


def _torch_optimizer(param, config):
    kwargs = {k: v for k, v in config.items() if k != "type"}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    return cls[config["type"]]([param], lr=0.0, **kwargs)


@pytest.mark.parametrize("configs", OPTIMIZERS)
def test_batched_optimizer_equals_torch_optim(configs):
    """Three trials (per-trial hyperparameters where given), six steps, a different learning
    rate per trial and per step: every trial's parameters follow torch.optim's, 1e-6 relative."""
    configs = [normalize_optimizer(configs[k % len(configs)]) for k in range(3)]
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(3, 40, generator=gen)
    grads = torch.randn(6, 3, 40, generator=gen)
    rates = torch.rand(6, 3, generator=gen, dtype=torch.float64) * 0.1
    flat = start.clone()
    batched = make_batched_optimizer(configs, CPU)
    params = [torch.nn.Parameter(start[k].clone()) for k in range(3)]
    reference = [_torch_optimizer(p, c) for p, c in zip(params, configs)]
    for step in range(6):
        batched.step(flat, grads[step].clone(), rates[step])
        for k, (p, opt) in enumerate(zip(params, reference)):
            opt.param_groups[0]["lr"] = float(rates[step, k])
            p.grad = grads[step, k].clone()
            opt.step()
    for k, p in enumerate(params):
        torch.testing.assert_close(flat[k], p.detach(), rtol=1e-6, atol=1e-7)


DRIVEN = [
    ({"type": "sgd", "momentum": 0.0}, ("momentum",)),
    ({"type": "sgd", "momentum": 0.9, "nesterov": True}, ("momentum", "weight_decay")),
    ({"type": "sgd", "momentum": 0.5, "dampening": 0.1}, ("dampening", "weight_decay")),
    ({"type": "adam"}, ("momentum", "eps", "weight_decay")),
    ({"type": "adamw", "amsgrad": True}, ("momentum", "weight_decay")),
]


@pytest.mark.parametrize(("config", "driven"), DRIVEN)
def test_batched_optimizer_reads_scheduled_hyperparams_like_torch_optim(config, driven):
    """Three trials, eight steps, each scheduled hyper-parameter a different value per trial and
    per step (SGD's momentum 0 at some steps: torch then skips the buffer, and starts it at the
    first step with momentum): every trial follows torch.optim, 1e-6 relative."""
    configs = [normalize_optimizer(config)] * 3
    gen = torch.Generator().manual_seed(1)
    start, grads = torch.randn(3, 40, generator=gen), torch.randn(8, 3, 40, generator=gen)
    rates = torch.rand(8, 3, generator=gen, dtype=torch.float64) * 0.1
    values = {k: torch.rand(8, 3, generator=gen, dtype=torch.float64) * 0.9 for k in driven}
    if "momentum" in values:
        values["momentum"][[0, 2, 3], [0, 1, 1]] = 0.0  # trial 0 starts without momentum
    if "eps" in values:
        values["eps"] *= 1e-6
    flat = start.clone()
    batched = make_batched_optimizer(configs, CPU, driven)
    params = [torch.nn.Parameter(start[k].clone()) for k in range(3)]
    reference = [_torch_optimizer(p, c) for p, c in zip(params, configs)]
    for step in range(8):
        batched.step(
            flat, grads[step].clone(), rates[step], {k: v[step] for k, v in values.items()}
        )
        for k, (p, opt) in enumerate(zip(params, reference)):
            opt.param_groups[0]["lr"] = float(rates[step, k])
            for key, v in values.items():
                set_hyperparam(opt.param_groups[0], key, float(v[step, k]))
            p.grad = grads[step, k].clone()
            opt.step()
    for k, p in enumerate(params):
        torch.testing.assert_close(flat[k], p.detach(), rtol=1e-6, atol=1e-7)


def test_optimizer_select_keeps_the_rows_state():
    configs = [normalize_optimizer({"type": "adam", "betas": [b, 0.999]}) for b in (0.9, 0.5, 0.7)]
    flat, grad = torch.randn(3, 8), torch.randn(3, 8)
    opt = make_batched_optimizer(configs, CPU)
    opt.step(flat, grad, torch.full((3,), 0.01, dtype=torch.float64))
    alone = make_batched_optimizer(configs[2:], CPU)
    kept = flat[2:].clone()
    alone_flat = flat[2:].clone()
    alone.exp_avg, alone.exp_avg_sq, alone.steps = opt.exp_avg[2:], opt.exp_avg_sq[2:], 1
    opt.select(torch.tensor([2]))
    opt.step(kept, grad[2:], torch.full((1,), 0.02, dtype=torch.float64))
    alone.step(alone_flat, grad[2:], torch.full((1,), 0.02, dtype=torch.float64))
    assert torch.equal(kept, alone_flat)


# --------------------------------------------------------------------------------------------
# whole trials: batched vs one by one


def _close(a: TrialResult, b: TrialResult) -> None:
    """Per trial after 3 epochs: the tolerance stated in the module docstring."""
    assert len(a.epochs) == len(b.epochs) and a.diverged == b.diverged
    for ea, eb in zip(a.epochs, b.epochs):
        assert (ea.epoch, ea.lr, ea.lr_min, ea.lr_max) == (eb.epoch, eb.lr, eb.lr_min, eb.lr_max)
        for name in ("train_loss", "val_loss", "test_loss"):
            assert getattr(ea, name) == pytest.approx(getattr(eb, name), rel=1e-3), name
        for name in ("train_acc", "val_acc", "test_acc"):
            assert getattr(ea, name) == pytest.approx(getattr(eb, name), abs=0.02), name
    assert a.best_epoch == b.best_epoch
    assert a.best_test_acc == pytest.approx(b.best_test_acc, abs=0.02)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_batched_trials_match_train_trial(task, model):
    specs = [spec_for(sched, model=model, seed=s) for s, sched in enumerate(SCHEDULES)]
    specs.append(
        spec_for(
            {"type": "step", "lr": 0.05, "step_size": 1, "gamma": 0.5},
            model=model,
            seed=9,
            lr_interval="epoch",
        )
    )
    specs.append(
        spec_for(
            SCHEDULES[0],
            model=model,
            seed=4,
            optimizer={"type": "sgd", "momentum": 0.5, "weight_decay": 1e-3},
        )
    )
    batched = B.train_trials(specs, task=task)
    for spec, result in zip(specs, batched):
        assert result.spec == spec
        _close(result, train_trial(spec, task=task))


def test_trials_with_a_momentum_schedule_match_train_trial(task):
    """Scheduled hyper-parameters batched as one by one: onecycle with its momentum, a cyclic
    momentum that touches 0 (SGD then steps without its buffer), a momentum policy, Adam's
    beta1 and a weight-decay schedule."""
    total = 3 * STEPS
    onecycle = {"type": "onecycle", "max_lr": 0.1, "total_steps": total}
    cycle = {"momentum": {"type": "onecycle_momentum", "total_steps": total}}
    touches_zero = {"type": "cyclic", "base_lr": 0.0, "max_lr": 0.9, "step_size_up": 5}
    policy = {"type": "policy", "trigger": "epoch", "lr0": 0.9, "factor": 0.5}
    decay = {"type": "cosine", "lr": 1e-2, "total": total}
    specs = [
        spec_for(onecycle, model="mlp", seed=0, hyperparams=cycle),
        spec_for(onecycle, model="mlp", seed=1, hyperparams={"momentum": touches_zero}),
        spec_for(SCHEDULES[1], model="mlp", seed=2, hyperparams={"momentum": policy}),
        spec_for(
            {"type": "constant", "lr": 0.003},
            model="mlp",
            seed=3,
            optimizer={"type": "adam"},
            hyperparams={**cycle, "weight_decay": decay},
        ),
        spec_for(SCHEDULES[1], model="mlp", seed=4, lr_interval="epoch", hyperparams=cycle),
    ]
    for spec, result in zip(specs, B.train_trials(specs, task=task)):
        assert result.spec == spec
        _close(result, train_trial(spec, task=task))


def test_adam_trials_match_train_trial(task):
    specs = [
        spec_for({"type": "constant", "lr": 0.003}, model="mlp", seed=s, epochs=2, optimizer=o)
        for s, o in enumerate([{"type": "adam"}, {"type": "adam", "weight_decay": 1e-3}])
    ]
    for spec, result in zip(specs, B.train_trials(specs, task=task)):
        _close(result, train_trial(spec, task=task))


def test_batched_trials_are_deterministic(task):
    specs = [spec_for(sched, seed=s, epochs=2) for s, sched in enumerate(SCHEDULES[:3])]
    a, b = B.train_trials(specs, task=task), B.train_trials(specs, task=task)
    assert [numbers(r) for r in a] == [numbers(r) for r in b]


def test_absurd_rate_diverges_alone_and_the_others_are_unaffected(task):
    """One trial at lr 1e6 among four: it is marked diverged and stops; the other three give
    results identical to a batch without it (it leaves the stack, nothing mixes trials)."""
    good = [spec_for(sched, model="mlp", seed=s) for s, sched in enumerate(SCHEDULES[:3])]
    bad = spec_for({"type": "constant", "lr": 1e6}, model="mlp", seed=5, epochs=3)
    mixed = B.train_trials([good[0], bad, good[1], good[2]], task=task)
    alone = B.train_trials(good, task=task)
    assert [numbers(r) for r in (mixed[0], mixed[2], mixed[3])] == [numbers(r) for r in alone]
    diverged = mixed[1]
    assert diverged.diverged and len(diverged.epochs) < bad.epochs
    assert not math.isfinite(diverged.epochs[-1].train_loss)
    assert diverged.best_epoch == 0 or math.isfinite(diverged.best_val_loss)
    one = train_trial(bad, task=task)
    assert one.diverged and len(one.epochs) == len(diverged.epochs)


def test_a_diverged_trial_leaves_with_its_momentum_schedule(task):
    """The scheduled columns leave the stack with the trial: the others are unchanged."""
    momentum = {"momentum": {"type": "cyclic", "base_lr": 0.5, "max_lr": 0.9, "step_size_up": 4}}
    good = [
        spec_for(s, model="mlp", seed=i, epochs=2, hyperparams=momentum)
        for i, s in enumerate(SCHEDULES[:2])
    ]
    bad = spec_for(
        {"type": "constant", "lr": 1e6}, model="mlp", seed=5, epochs=2, hyperparams=momentum
    )
    mixed = B.train_trials([good[0], bad, good[1]], task=task)
    alone = B.train_trials(good, task=task)
    assert [numbers(r) for r in (mixed[0], mixed[2])] == [numbers(r) for r in alone]
    assert mixed[1].diverged


def test_best_state_is_the_best_epochs_weights(task):
    spec = spec_for({"type": "constant", "lr": 0.3}, model="mlp", seed=3, epochs=4)
    other = dataclasses.replace(spec, seed=4)
    result = B.train_trials([spec, other], task=task, keep_best_state=True)[0]
    val = [e.val_loss for e in result.epochs]
    assert result.best_val_loss == min(val) and result.best_epoch == val.index(min(val)) + 1
    model = build_model("mlp", task)
    model.load_state_dict(result.best_state)
    loss = evaluate(model, task.x_val, task.y_val)[0]
    assert loss == pytest.approx(result.best_val_loss, rel=1e-6)
    assert evaluate(model, task.x_test, task.y_test)[1] == result.best_test_acc
    assert B.train_trials([spec, other], task=task)[0].best_state is None


def test_records_callbacks_and_time_shares(task):
    specs = [spec_for(seed=s, epochs=2) for s in range(3)]
    seen = []
    results = B.train_trials(specs, task=task, on_epoch=lambda s, r: seen.append((s.seed, r)))
    assert [(seed, r.epoch) for seed, r in seen] == [(s, e) for e in (1, 2) for s in range(3)]
    for r in results:
        assert [e.epoch for e in r.epochs] == [1, 2]
        assert r.wall_time >= sum(e.seconds for e in r.epochs) > 0
        assert TrialResult.from_dict(r.to_dict()).to_dict() == r.to_dict()


def test_rng_and_threads_are_left_alone(task):
    torch.manual_seed(1234)
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    B.train_trials([spec_for(seed=s, epochs=1) for s in range(2)], task=task, threads=1)
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads


def test_vmap_engine_trains_like_bmm(task):
    specs = [spec_for(sched, seed=s, epochs=2) for s, sched in enumerate(SCHEDULES[:2])]
    for a, b in zip(
        B.train_trials(specs, task=task, engine="vmap"), B.train_trials(specs, task=task)
    ):
        _close(a, b)


# --------------------------------------------------------------------------------------------
# what trains together, and the fallback


def test_not_batchable_models_fall_back_to_train_trial():
    digits = T.load_task("digits").subset(120, 30, 30)
    specs = [
        TrialSpec(
            task="digits",
            model="cnn28",
            schedule={"type": "constant", "lr": 0.05},
            epochs=1,
            batch_size=40,
            seed=s,
        )
        for s in range(2)
    ]
    assert not B.batchable("cnn28") and "one by one" in B.not_batchable_reason("cnn28")
    assert B.batchable("cnn") and B.not_batchable_reason("mlp") is None
    results = B.train_trials(specs, task=digits)
    assert [numbers(r) for r in results] == [numbers(train_trial(s, task=digits)) for s in specs]


def test_batch_key_separates_what_cannot_share_an_update():
    base = spec_for()
    assert B.batch_key(base) == B.batch_key(dataclasses.replace(base, seed=5))
    assert B.batch_key(base) == B.batch_key(
        spec_for(
            {"type": "cosine", "lr": 0.1, "total": 9},
            optimizer={"type": "sgd", "momentum": 0.5, "weight_decay": 0.0},
        )
    )
    for change in (
        {"model": "mlp"},
        {"epochs": 4},
        {"batch_size": 25},
        {"lr_interval": "epoch"},
        {"optimizer": {"type": "adam"}},
        {"optimizer": {"type": "sgd", "momentum": 0.0}},
        {"optimizer": {"type": "sgd", "momentum": 0.9, "nesterov": True}},
        {"hyperparams": {"momentum": {"type": "constant", "lr": 0.9}}},
    ):
        assert B.batch_key(base) != B.batch_key(dataclasses.replace(base, **change)), change


def test_mixed_keys_train_in_groups_and_keep_the_order(task):
    specs = [
        spec_for(seed=0, epochs=1),
        spec_for(model="mlp", seed=1, epochs=1),
        spec_for(seed=2, epochs=1),
    ]
    results = B.train_trials(specs, task=task)
    assert [r.spec for r in results] == specs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    models=st.lists(st.sampled_from(["cnn", "mlp"]), min_size=0, max_size=30),
    k=st.integers(1, 12),
    workers=st.integers(1, 4),
)
def test_plan_batches_invariants(models, k, workers):
    specs = [spec_for(model=m, seed=i) for i, m in enumerate(models)]
    batches = B.plan_batches(specs, k, workers)
    assert sorted(s.seed for b in batches for s in b) == list(range(len(specs)))
    for batch in batches:
        assert 1 <= len(batch) <= k and len({B.batch_key(s) for s in batch}) == 1
        assert [s.seed for s in batch] == sorted(s.seed for s in batch)
    for model in set(models):
        sizes = [len(b) for b in batches if b[0].model == model]
        assert max(sizes) - min(sizes) <= 1
        assert len(sizes) >= min(workers, models.count(model))


def test_plan_batches_splits_the_default_study_over_the_workers():
    from lrlab.lab.study import load_study

    specs = [c.spec for c in load_study("default", epochs=2).cells]
    assert [len(b) for b in B.plan_batches(specs, 32, workers=2)] == [20, 20]
    assert [len(b) for b in B.plan_batches(specs, 8, workers=2)] == [8] * 5
    cnn28 = [
        TrialSpec(
            task="digits",
            model="cnn28",
            schedule={"type": "constant", "lr": 0.1},
            epochs=1,
            batch_size=10,
            seed=s,
        )
        for s in range(3)
    ]
    assert [len(b) for b in B.plan_batches(cnn28, 32)] == [1, 1, 1]


def test_choose_batch_trials():
    assert B.choose_batch_trials("cnn28", "digits", "cpu", 2) == 1
    k1 = B.choose_batch_trials("cnn", "mnist1d", "cpu", 1)
    assert 1 <= k1 <= B.CPU_MAX_TRIALS
    assert B.choose_batch_trials("cnn", "mnist1d", "cpu", 10_000_000) <= k1


def test_task_name_must_match_the_specs(task):
    other = dataclasses.replace(task, name="digits")
    with pytest.raises(ConfigError, match="digits"):
        B.train_trials([spec_for(seed=0, epochs=1), spec_for(seed=1, epochs=1)], task=other)


def test_task_is_loaded_once_per_process(task, monkeypatch):
    calls = []
    monkeypatch.setattr(T, "load_task", lambda *a, **k: calls.append(a) or task)
    monkeypatch.setattr(B, "_TASK_CACHE", {})
    specs = [spec_for(seed=s, epochs=1) for s in range(2)]
    first, again = B.train_trials(specs), B.train_trials(specs)
    assert len(calls) == 1
    assert [numbers(r) for r in first] == [numbers(r) for r in again]
    assert [numbers(r) for r in first] == [numbers(r) for r in B.train_trials(specs, task=task)]
