"""lrlab.torch.Scheduler: a real LRScheduler, tensor lrs in place, per-group, exact resume."""

import io
import json
import subprocess
import sys

import pytest
import torch
from helpers import make_opt

import lrlab
from lrlab.errors import ConfigError
from lrlab.torch import Scheduler

RALR = {
    "type": "ralr",
    "base": {"type": "multistep", "lr": 0.1, "milestones": [50, 75]},
    "p": 0.5,
    "low": 1.0,
    "high": 3.0,
    "period": 3,
    "seed": 7,
}
CLR = {
    "type": "cyclic",
    "mode": "triangular2",
    "base_lr": 0.001,
    "max_lr": 0.006,
    "step_size_up": 7,
}


def run(sched, opt, steps):
    out = []
    for _ in range(steps):
        out.append([float(g["lr"]) for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_is_a_real_lr_scheduler_and_follows_the_schedule():
    opt = make_opt()
    sched = Scheduler(opt, CLR)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    s = lrlab.from_config(CLR)
    assert [lr for (lr,) in run(sched, opt, 40)] == [s(t) for t in range(40)]
    assert sched.get_last_lr() == [s(40)]


def test_tensor_lr_is_filled_in_place():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=torch.tensor(0.5))
    lr_tensor = opt.param_groups[0]["lr"]
    sched = Scheduler(opt, RALR)
    s = lrlab.from_config(RALR)
    for t in range(1, 20):
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] is lr_tensor
        assert lr_tensor.item() == pytest.approx(s(t), rel=1e-6)
        assert isinstance(sched.get_last_lr()[0], torch.Tensor)
        assert sched.get_last_lr()[0] is not lr_tensor


def test_one_schedule_per_group_and_scales():
    opt = make_opt(groups=2)
    sched = Scheduler(opt, [CLR, RALR])
    lrs = run(sched, opt, 10)
    a, b = lrlab.from_config(CLR), lrlab.from_config(RALR)
    assert lrs == [[a(t), b(t)] for t in range(10)]

    opt = make_opt(groups=2)
    sched = Scheduler(opt, CLR, scales=[1.0, 0.1])
    assert run(sched, opt, 5) == [[a(t), a(t) * 0.1] for t in range(5)]
    with pytest.raises(ConfigError, match="parameter groups"):
        Scheduler(make_opt(groups=2), [CLR])
    with pytest.raises(ConfigError, match="scales"):
        Scheduler(make_opt(groups=2), CLR, scales=[1.0])


def test_state_dict_is_small_and_weights_only_loadable():
    opt = make_opt()
    sched = Scheduler(opt, RALR)
    run(sched, opt, 17)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["step"] == 17 and state["version"] == 2
    assert len(json.dumps(state)) < 1000
    with pytest.raises(ConfigError, match="version"):
        sched.load_state_dict({**state, "version": 99})


def test_per_epoch_stepping():
    epochs, per_epoch = 6, 5
    opt = make_opt()
    sched = Scheduler(opt, {"type": "step", "lr": 1.0, "step_size": 2, "gamma": 0.5})
    seen = []
    for _ in range(epochs):
        for _ in range(per_epoch):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
        sched.step()
    assert seen == [1.0] * 10 + [0.5] * 10 + [0.25] * 10


def test_set_step_is_explicit_time():
    opt = make_opt()
    sched = Scheduler(opt, CLR)
    sched.set_step(123)
    assert opt.param_groups[0]["lr"] == lrlab.from_config(CLR)(123)


def test_metric_is_harmless_for_a_plain_schedule():
    opt = make_opt()
    sched = Scheduler(opt, CLR)
    run(sched, opt, 3)
    sched.step(0.5)
    assert sched.last_epoch == 3 and opt.param_groups[0]["lr"] == lrlab.from_config(CLR)(3)


RESUME_SCRIPT = r"""
import sys, torch, lrlab.torch
config = {config}
torch.manual_seed(0)
model = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.1), momentum=0.9)
sched = lrlab.torch.Scheduler(opt, config)
ckpt = torch.load(sys.argv[1], weights_only=True)
model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["opt"]); sched.load_state_dict(ckpt["sched"])
out = []
for _ in range({rest}):
    out.append(float(opt.param_groups[0]["lr"]))
    opt.zero_grad(); model(torch.ones(1, 3)).sum().backward(); opt.step(); sched.step()
print(repr(out)); print(repr([float(p.detach().sum()) for p in model.parameters()]))
"""


@pytest.mark.integration  # a new Python process per case
@pytest.mark.parametrize("config", [RALR, CLR], ids=["ralr", "clr"])
def test_resume_in_a_new_process_gives_the_uninterrupted_learning_rates(config, tmp_path):
    total, cut = 60, 23

    def fresh():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.1), momentum=0.9)
        return model, opt, Scheduler(opt, config)

    def train(model, opt, sched, n):
        out = []
        for _ in range(n):
            out.append(float(opt.param_groups[0]["lr"]))
            opt.zero_grad()
            model(torch.ones(1, 3)).sum().backward()
            opt.step()
            sched.step()
        return out

    model, opt, sched = fresh()
    uninterrupted = train(model, opt, sched, total)
    params = [float(p.detach().sum()) for p in model.parameters()]

    model, opt, sched = fresh()
    first = train(model, opt, sched, cut)
    path = tmp_path / "ckpt.pt"
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, path
    )
    script = RESUME_SCRIPT.format(config=repr(config), rest=total - cut)
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    )
    lines = out.stdout.strip().splitlines()
    assert first + eval(lines[0]) == uninterrupted
    assert eval(lines[1]) == params
