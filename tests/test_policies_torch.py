"""Policies inside lrlab.torch.Scheduler: the training loop equals the replay, an exact resume in a
new process, and two distributed ranks (gloo, CPU) that see different metrics but decide alike."""

import io
import json
import math
import socket
import subprocess
import sys

import pytest
import torch
from helpers import child_env, make_opt

import lrlab
from lrlab.policies import replay
from lrlab.torch import Scheduler

STEPS_PER_EPOCH = 3
METRICS = [
    2.3,
    0.9,
    0.62,
    0.55,
    0.52,
    0.516,
    0.53,
    0.49,
    0.487,
    0.5,
    0.51,
    0.4868,
    float("nan"),
    0.4867,
    0.4867,
    0.4867,
    0.49,
]

CONFIGS = {
    "cutoff-seq4": {
        "type": "policy",
        "trigger": "cutoff",
        "values": {"type": "sequence", "kind": "seq4", "lr": 0.01},
    },
    "oscillation-patience-cosine": {
        "type": "policy",
        "trigger": "oscillation",
        "patience": 1,
        "factor": 0.5,
        "schedule": {"type": "cosine", "lr": 0.1, "total": 60},
    },
    "plateau-cooldown": {
        "type": "policy",
        "trigger": "plateau",
        "patience": 1,
        "cooldown": 2,
        "factor": 0.5,
        "lr0": 0.1,
        "min_lr": 0.01,
    },
    "ralr-x-cutoff": {
        "type": "policy",
        "trigger": "cutoff",
        "cutoff": 0.05,
        "values": {"type": "sequence", "kind": "seq2", "lr": 0.01},
        "schedule": {
            "type": "ralr",
            "base": {"type": "constant", "lr": 1.0},
            "period": 3,
            "seed": 5,
        },
    },
}

LOOP = r"""
def train(sched, opt, metrics, steps_per_epoch, start, stop):
    '''Steps start..stop-1 of the documented loop: sched.step() per iteration, then
    sched.step(val_loss) at the end of every epoch. Returns the lr used at each step.'''
    out = []
    for t in range(start, stop):
        out.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
        if (t + 1) % steps_per_epoch == 0:
            sched.step(metrics[(t + 1) // steps_per_epoch - 1])
    return out
"""
exec(LOOP)  # the same loop in this process and in the child processes


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("tensor", [False, True], ids=["float-lr", "tensor-lr"])
def test_training_loop_equals_replay(name, tensor):
    config = CONFIGS[name]
    total = len(METRICS) * STEPS_PER_EPOCH
    opt = make_opt(tensor=tensor)
    sched = Scheduler(opt, config)
    seen = train(sched, opt, METRICS, STEPS_PER_EPOCH, 0, total)  # noqa: F821 (exec'd above)
    expected = replay(lrlab.from_config(config), METRICS, STEPS_PER_EPOCH)
    if tensor:
        assert seen == pytest.approx(expected.lrs, rel=1e-6)  # float32 tensor
    else:
        assert seen == expected.lrs
    assert sched.states["lr"][0] == expected.state
    assert float(sched.get_last_lr()[0]) == pytest.approx(expected.final_lr, rel=1e-6)
    assert expected.pops > 0


def test_step_with_metric_applies_the_new_rate_at_once_without_advancing_time():
    opt = make_opt()
    sched = Scheduler(opt, {"type": "policy", "trigger": "epoch", "factor": 0.5, "lr0": 1.0})
    assert opt.param_groups[0]["lr"] == 1.0 and sched.last_epoch == 0
    sched.step(3.0)
    assert opt.param_groups[0]["lr"] == 0.5 and sched.last_epoch == 0
    sched.observe(torch.tensor(2.0))
    assert sched.get_last_lr() == [0.25]
    sched.step(float("nan"))  # ignored
    assert sched.get_last_lr() == [0.25] and sched.states["lr"][0].bad_metrics == 1


def test_groups_sharing_a_policy_share_its_state_and_scales_apply():
    opt = make_opt(groups=2)
    sched = Scheduler(
        opt, {"type": "policy", "trigger": "epoch", "factor": 0.5, "lr0": 1.0}, scales=[1.0, 0.1]
    )
    sched.step(1.0)
    assert sched.get_last_lr() == [0.5, 0.05]


def test_state_dict_with_a_policy_is_weights_only_loadable():
    opt = make_opt()
    sched = Scheduler(opt, CONFIGS["plateau-cooldown"])
    train(sched, opt, METRICS, STEPS_PER_EPOCH, 0, 20)  # noqa: F821
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    (policy_state,) = state["hyperparams"]["lr"]["states"]
    assert policy_state["version"] == 2 and policy_state["trigger"]["type"] == "plateau"
    assert len(json.dumps(state)) < 2000
    fresh = Scheduler(make_opt(), CONFIGS["plateau-cooldown"])
    fresh.load_state_dict(state)
    assert fresh.states == sched.states and fresh.get_last_lr() == sched.get_last_lr()


RESUME_CHILD = (
    LOOP
    + r"""
import json, sys, torch
import lrlab.torch
spec = json.load(open(sys.argv[1]))
results = {}
for name, job in spec.items():
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    sched = lrlab.torch.Scheduler(opt, job["config"])
    ckpt = torch.load(job["ckpt"], weights_only=True)
    opt.load_state_dict(ckpt["opt"])
    sched.load_state_dict(ckpt["sched"])
    results[name] = train(sched, opt, job["metrics"], job["spe"], job["cut"], job["total"])
print(json.dumps(results))
"""
)


def test_resume_in_a_new_process_continues_exactly(tmp_path):
    total = len(METRICS) * STEPS_PER_EPOCH
    # cut mid-epoch (policy state mid-patience / mid-cooldown) and at an epoch boundary
    cuts = {
        "cutoff-seq4": 17,
        "oscillation-patience-cosine": 22,
        "plateau-cooldown": 25,
        "ralr-x-cutoff": 24,
    }
    spec, expected = {}, {}
    for name, config in CONFIGS.items():
        opt = make_opt()
        sched = Scheduler(opt, config)
        uninterrupted = train(sched, opt, METRICS, STEPS_PER_EPOCH, 0, total)  # noqa: F821
        opt = make_opt()
        sched = Scheduler(opt, config)
        first = train(sched, opt, METRICS, STEPS_PER_EPOCH, 0, cuts[name])  # noqa: F821
        assert first == uninterrupted[: cuts[name]]
        ckpt = tmp_path / f"{name}.pt"
        torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, ckpt)
        spec[name] = {
            "config": config,
            "ckpt": str(ckpt),
            "metrics": METRICS,
            "spe": STEPS_PER_EPOCH,
            "cut": cuts[name],
            "total": total,
        }
        expected[name] = uninterrupted[cuts[name] :]
    (tmp_path / "spec.json").write_text(
        json.dumps(spec)
    )  # NaN is written as NaN; json reads it back
    (tmp_path / "child.py").write_text(RESUME_CHILD)
    env = child_env()
    out = subprocess.run(
        [sys.executable, str(tmp_path / "child.py"), str(tmp_path / "spec.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    for name in CONFIGS:
        assert results[name] == expected[name], name


DIST_WORKER = (
    LOOP
    + r"""
import datetime, json, sys
import torch, torch.distributed as dist
import lrlab.torch
rank, port, spec_path, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                        timeout=datetime.timedelta(seconds=60))
spec = json.load(open(spec_path))
results = {}
for name, config in spec["configs"].items():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    sched = lrlab.torch.Scheduler(opt, config)
    lrs = train(sched, opt, spec["metrics"][rank], spec["spe"], 0, spec["total"])
    results[name] = {"lrs": lrs, "state": sched.state_dict()["hyperparams"]["lr"]["states"][0]}
dist.barrier()
dist.destroy_process_group()
json.dump(results, open(out_path, "w"))
"""
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_with_different_metrics_make_identical_decisions(tmp_path):
    # the ranks' own histories disagree about when the loss rose / plateaued; the mean decides
    wiggle = [0.03 * (-1) ** e * (1 + e % 3) for e in range(len(METRICS))]
    rank0 = [m + w for m, w in zip(METRICS, wiggle)]
    rank1 = [m - w for m, w in zip(METRICS, wiggle)]
    rank1[3] = float(
        "inf"
    )  # one rank diverges for one epoch: the mean is inf, both ranks ignore it
    mean = [(a + b) / 2 for a, b in zip(rank0, rank1)]
    spe = 2
    total = len(METRICS) * spe
    configs = {
        k: CONFIGS[k] for k in ("cutoff-seq4", "oscillation-patience-cosine", "plateau-cooldown")
    }
    configs["oscillation-seq1"] = {
        "type": "policy",
        "trigger": "oscillation",
        "values": {"type": "sequence", "kind": "seq1", "lr": 0.01},
    }
    spec = {"configs": configs, "metrics": [rank0, rank1], "spe": spe, "total": total}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "worker.py").write_text(DIST_WORKER)
    env = child_env(OMP_NUM_THREADS="1")
    port = free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(tmp_path / "worker.py"),
                str(rank),
                str(port),
                str(tmp_path / "spec.json"),
                str(tmp_path / f"out{rank}.json"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in (0, 1)
    ]
    for p in procs:
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("distributed workers timed out")
        assert p.returncode == 0, err
    out0 = json.loads((tmp_path / "out0.json").read_text())
    out1 = json.loads((tmp_path / "out1.json").read_text())
    differ = 0
    for name, config in configs.items():
        assert out0[name] == out1[name], name  # identical learning rates and state on both ranks
        policy = lrlab.from_config(config)
        expected = replay(policy, mean, spe)
        assert out0[name]["lrs"] == expected.lrs, name
        assert out0[name]["state"] == policy.state_to_dict(expected.state)
        assert expected.state.bad_metrics == 2  # the inf epoch, and the NaN epoch of METRICS
        alone0, alone1 = replay(policy, rank0, spe), replay(policy, rank1, spe)
        differ += alone0.pop_epochs != alone1.pop_epochs
    assert differ >= 2, "the ranks' own metrics should disagree, or the test proves nothing"
    assert math.isinf(rank1[3])
