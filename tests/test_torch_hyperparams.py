"""lrlab.torch.Scheduler drives any param-group key: momentum (betas[0] for Adam) and the rest.

torch's ``CyclicLR(cycle_momentum=True)`` is reproduced exactly: learning rate and momentum equal
torch's, bit for bit, over 100,000 steps in every mode.
"""

from __future__ import annotations

import io
import random
import warnings
from dataclasses import dataclass

import pytest
import torch

import lrlab
from lrlab.errors import ConfigError
from lrlab.schedules import Cyclic
from lrlab.torch import Scheduler, set_hyperparam

STEPS = 100_000
MODES = ("triangular", "triangular2", "exp_range")


def sgd(groups=1, lr=0.1, momentum=0.9, **kw):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(groups)]
    return torch.optim.SGD([{"params": [p]} for p in params], lr=lr, momentum=momentum, **kw)


def adam(groups=1, **kw):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(groups)]
    return torch.optim.Adam([{"params": [p]} for p in params], **kw)


def momentum_of(group) -> float:
    return float(group["betas"][0]) if "betas" in group else float(group["momentum"])


def trace(sched, opt, steps):
    out = []
    for _ in range(steps):
        out.append([(g["lr"], momentum_of(g)) for g in opt.param_groups])
        sched.step()
    return out


@dataclass(frozen=True)
class MaxMinusCyclic:
    """A driver written by hand (the protocol's required part only): torch's momentum curve,
    ``max_momentum - cyclic(0 -> max - base)``, the arithmetic of CyclicLR
    (``max_m - (max_m - base_m) * scale_factor * scale``)."""

    max_momentum: float
    rise: Cyclic
    stateful = False

    def init(self):
        return None

    def value(self, state, step):
        return self.max_momentum - self.rise(step)

    def observe(self, state, metric):
        return state

    def state_to_dict(self, state):
        return None

    def state_from_dict(self, d, where="state"):
        return None


def cyclic_case(seed: int):
    rng = random.Random(seed)
    mode = MODES[seed % 3]
    up = rng.randint(1, 3000)
    kw = dict(
        base_lr=rng.uniform(1e-4, 1e-2),
        max_lr=rng.uniform(1e-2, 1.0),
        step_size_up=up,
        step_size_down=rng.choice([None, rng.randint(1, 3000)]),
        mode=mode,
        gamma=rng.uniform(0.9999, 1.0) if mode == "exp_range" else 1.0,
    )
    momenta = dict(base_momentum=rng.uniform(0.7, 0.85), max_momentum=rng.uniform(0.86, 0.99))
    return kw, momenta


def momentum_drivers(kw, momenta):
    """The momentum curve as a config (a descending cycle) and as a protocol driver."""
    shape = {k: v for k, v in kw.items() if k not in ("base_lr", "max_lr")}
    if shape["step_size_down"] is None:
        del shape["step_size_down"]
    descending = {
        "type": "cyclic",
        "base_lr": momenta["max_momentum"],
        "max_lr": momenta["base_momentum"],
        **shape,
    }
    rise = Cyclic(base_lr=0.0, max_lr=momenta["max_momentum"] - momenta["base_momentum"], **shape)
    return descending, MaxMinusCyclic(momenta["max_momentum"], rise)


def lr_config(kw):
    return {"type": "cyclic", **{k: v for k, v in kw.items() if v is not None}}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cyclic_lr_with_momentum_equals_torch_over_100k_steps(seed):
    kw, momenta = cyclic_case(seed)
    ref_opt = sgd(groups=2)
    ref = torch.optim.lr_scheduler.CyclicLR(ref_opt, cycle_momentum=True, **kw, **momenta)
    _, driver = momentum_drivers(kw, momenta)
    opt = sgd(groups=2)
    sched = Scheduler(opt, lr=lr_config(kw), momentum=driver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping without optimizer.step() on purpose
        expected, got = trace(ref, ref_opt, STEPS), trace(sched, opt, STEPS)
    assert got == expected, kw  # bit for bit: lr and momentum of both groups at every step
    assert sched.state_dict()["hyperparams"]["momentum"]["configs"] == [None]  # it has none


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_cyclic_momentum_as_a_descending_cycle_config(seed):
    kw, momenta = cyclic_case(seed)
    descending, _ = momentum_drivers(kw, momenta)
    ref_opt = adam(lr=0.1)
    ref = torch.optim.lr_scheduler.CyclicLR(ref_opt, cycle_momentum=True, **kw, **momenta)
    opt = adam(lr=0.1)
    sched = Scheduler(opt, lr=lr_config(kw), momentum=descending)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert trace(sched, opt, 20_000) == trace(ref, ref_opt, 20_000), kw


def test_adam_momentum_is_beta1_and_beta2_is_kept():
    kw, momenta = cyclic_case(1)
    _, driver = momentum_drivers(kw, momenta)
    ref_opt = adam(groups=2, lr=0.1, betas=(0.9, 0.99))
    ref = torch.optim.lr_scheduler.CyclicLR(ref_opt, cycle_momentum=True, **kw, **momenta)
    opt = adam(groups=2, lr=0.1, betas=(0.9, 0.99))
    sched = Scheduler(opt, lr=lr_config(kw), momentum=driver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert trace(sched, opt, 3000) == trace(ref, ref_opt, 3000)
    assert all(g["betas"][1] == 0.99 for g in opt.param_groups)
    assert "momentum" not in opt.param_groups[0]


def test_tensor_values_are_filled_in_place():
    lr, beta1 = torch.tensor(0.01), torch.tensor(0.9)
    opt = torch.optim.Adam(
        [torch.nn.Parameter(torch.zeros(2))], lr=lr, betas=(beta1, torch.tensor(0.999))
    )
    cos = {"type": "cosine", "lr": 0.01, "total": 10}
    mom = {"type": "constant", "lr": 0.85}
    sched = Scheduler(opt, lr=cos, momentum=mom)
    for t in range(1, 6):
        opt.step()
        sched.step()
        group = opt.param_groups[0]
        assert group["lr"] is lr and group["betas"][0] is beta1
        assert float(lr) == pytest.approx(lrlab.from_config(cos)(t), rel=1e-6)
        assert float(beta1) == pytest.approx(0.85, rel=1e-6)


def test_any_key_through_hyperparams_with_a_policy():
    opt = sgd(groups=2, weight_decay=1e-4)
    wd = {"type": "cosine", "lr": 1e-3, "total": 10, "end_lr": 1e-5}
    plateau = {"type": "policy", "trigger": "plateau", "patience": 0, "factor": 0.5, "lr0": 0.1}
    sched = Scheduler(opt, hyperparams={"lr": plateau, "weight_decay": wd}, scales=[1.0, 0.5])
    for _ in range(3):
        sched.step()
    sched.step(1.0)
    sched.step(1.0)  # no improvement: one reduction
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.025]
    assert [g["weight_decay"] for g in opt.param_groups] == [lrlab.from_config(wd)(3)] * 2
    assert sched.values_at(3)["weight_decay"] == [lrlab.from_config(wd)(3)] * 2
    assert sched.states["lr"][0].pops == 1 and sched.states["weight_decay"] == [None]


def test_state_dict_keeps_every_key_and_resumes():
    plateau = {"type": "policy", "trigger": "plateau", "patience": 1, "factor": 0.5, "lr0": 0.1}
    mom = {"type": "cosine", "lr": 0.95, "total": 50, "end_lr": 0.85}

    def run(sched, metrics):
        for m in metrics:
            for _ in range(3):
                sched.step()
            sched.step(m)

    metrics = [1.0, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8]
    whole = Scheduler(sgd(), lr=plateau, momentum=mom)
    run(whole, metrics)
    first = Scheduler(sgd(), lr=plateau, momentum=mom)
    run(first, metrics[:4])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert set(state["hyperparams"]) == {"lr", "momentum"}
    opt = sgd()
    resumed = Scheduler(opt, lr=plateau, momentum=mom)
    resumed.load_state_dict(state)
    run(resumed, metrics[4:])
    assert resumed.states == whole.states
    assert resumed.get_last_lr() == whole.get_last_lr()
    assert opt.param_groups[0]["momentum"] == whole.optimizer.param_groups[0]["momentum"]


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal_strategy", ["cos", "linear"])
def test_onecycle_lr_and_momentum_equal_torch(anneal_strategy, three_phase):
    shape = dict(
        total_steps=5000, pct_start=0.3, anneal_strategy=anneal_strategy, three_phase=three_phase
    )
    momenta = dict(base_momentum=0.85, max_momentum=0.95)
    ref_opt = sgd()
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.1, **shape, **momenta)
    opt = sgd()
    sched = Scheduler(
        opt,
        lr={"type": "onecycle", "max_lr": 0.1, **shape},
        momentum={"type": "onecycle_momentum", **shape, **momenta},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, expected = trace(sched, opt, 4999), trace(ref, ref_opt, 4999)
    flat = [[x for row in rows for pair in row for x in pair] for rows in (got, expected)]
    assert flat[0] == flat[1]  # bit for bit: the same arithmetic as torch


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (
            {"hyperparams": {"wieght_decay": {"type": "constant", "lr": 0.1}}},
            ["'wieght_decay'", "weight_decay"],
        ),
        (
            {"lr": {"type": "constant", "lr": 0.1}, "schedule": {"type": "constant", "lr": 0.1}},
            ["'lr'", "twice"],
        ),
        ({"momentum": {"type": "constant", "lr": 0.9}, "scales": [0.5]}, ["scales", "lr"]),
        ({}, ["nothing to drive"]),
        ({"schedule": {"type": "constant", "lr": 0.1}, "scales": [1e300]}, ["scales[0]"]),
        ({"schedule": {"type": "constant", "lr": 0.1}, "sync_metric": 1}, ["sync_metric"]),
        ({"schedule": [{"type": "constant", "lr": 0.1}] * 2}, ["2 schedules for 1"]),
    ],
)
def test_bad_arguments_are_one_line_config_errors(kwargs, words):
    with pytest.raises(ConfigError) as info:
        Scheduler(sgd(), **kwargs)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_momentum_needs_an_optimizer_that_has_it():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)  # momentum=0 still a key
    Scheduler(opt, momentum={"type": "constant", "lr": 0.5})
    assert opt.param_groups[0]["momentum"] == 0.5
    rms = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match="no 'momentum'"):
        Scheduler(rms, momentum={"type": "constant", "lr": 0.5})


def test_set_hyperparam_is_the_one_writer():
    group = {"lr": torch.tensor(0.1), "momentum": 0.9, "params": []}
    lr = group["lr"]
    set_hyperparam(group, "lr", 0.25)
    set_hyperparam(group, "momentum", 0.8)
    assert group["lr"] is lr and float(lr) == 0.25 and group["momentum"] == 0.8
    with pytest.raises(ConfigError, match="no 'betas'"):
        set_hyperparam(group, "betas", 0.5)


def test_sync_metric_off_skips_the_all_reduce(monkeypatch):
    import lrlab.torch as lt

    def fail(metric):
        raise AssertionError("all_reduce called")

    monkeypatch.setattr(lt, "_mean_over_ranks", fail)
    plateau = {"type": "policy", "trigger": "epoch", "factor": 0.5, "lr0": 1.0}
    sched = Scheduler(sgd(), plateau, sync_metric=False)
    sched.step(1.0)
    assert sched.get_last_lr() == [0.5]
    with pytest.raises(AssertionError, match="all_reduce"):
        Scheduler(sgd(), plateau).step(1.0)


def test_a_schedule_made_from_a_function_drives_and_saves_without_a_config():
    opt = sgd()
    sched = Scheduler(opt, lrlab.schedules.from_function(lambda t: 0.1 * 0.5**t))
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.05
    state = sched.state_dict()
    assert state["hyperparams"]["lr"]["configs"] == [None]
    fresh = Scheduler(sgd(), lrlab.schedules.from_function(lambda t: 0.1 * 0.5**t))
    fresh.load_state_dict(state)
    assert fresh.get_last_lr() == [0.05]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_tensor_written_through_its_storage_rounds_like_fill(dtype):
    lr = torch.tensor(0.5, dtype=dtype)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    clr = {"type": "cyclic", "base_lr": 0.001, "max_lr": 0.0123456789, "step_size_up": 7}
    sched = Scheduler(opt, clr)
    reference = torch.tensor(0.0, dtype=dtype)
    for t in range(1, 40):
        sched.step()
        reference.fill_(lrlab.from_config(clr)(t))
        assert opt.param_groups[0]["lr"] is lr and lr.item() == reference.item()
