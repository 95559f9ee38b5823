"""DistributedDataParallel: two gloo processes on the CPU, launched with ``torchrun``.

Each rank trains a small DDP model on its own shard with one lrlab Scheduler driving three
parameter groups: RALR (a new draw every step), CLR, and a plateau policy on a cosine. Every few
steps each rank feeds the policy *its own* validation loss (they differ); ``Scheduler`` averages
the metric over the ranks first, so the ranks take the same decisions. After every step the
ranks all-gather their learning rates and compare them.

This file is also the worker: ``torchrun --nproc-per-node 2 tests/test_integration_ddp.py OUT``.
The DDP snippet of docs/integrations.md runs under torchrun too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

STEPS = 60
EVAL_EVERY = 10
RALR = {
    "type": "ralr",
    "base": {"type": "cosine", "lr": 0.05, "total": STEPS},
    "p": 0.5,
    "period": 1,
    "seed": 4,
}
CLR = {"type": "cyclic", "base_lr": 0.001, "max_lr": 0.02, "step_size_up": 4, "mode": "triangular2"}
POLICY = {
    "type": "policy",
    "trigger": "plateau",
    "factor": 0.5,
    "patience": 0,
    "threshold": 0.05,
    "schedule": {"type": "cosine", "lr": 0.05, "total": STEPS},
}


def _worker(out_path: str) -> None:
    import gc

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from lrlab.torch import Scheduler

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 4),
        torch.nn.Tanh(),
        torch.nn.Linear(4, 1),
    )
    ddp = DDP(model)
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters()},
            {"params": model[2].parameters()},
            {"params": model[4].parameters()},
        ],
        lr=0.1,
        momentum=0.9,
    )
    sched = Scheduler(opt, [RALR, CLR, POLICY])
    g = torch.Generator().manual_seed(100 + rank)  # a different shard on every rank
    x = torch.randn(64, 6, generator=g)
    y = x.sum(dim=1, keepdim=True) * (1 + rank)  # and a different target: different val losses
    x_val, y_val = x[:16] + 0.1, y[:16]

    lrs, local_metrics, mismatches = [], [], 0
    for step in range(STEPS):
        mine = torch.tensor([float(group["lr"]) for group in opt.param_groups], dtype=torch.float64)
        gathered = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(gathered, mine)
        mismatches += sum(not torch.equal(gathered[0], other) for other in gathered[1:])
        lrs.append(mine.tolist())
        i = (step * 8) % 64
        loss = torch.nn.functional.mse_loss(ddp(x[i : i + 8]), y[i : i + 8])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % EVAL_EVERY == 0:
            with torch.no_grad():
                metric = float(torch.nn.functional.mse_loss(model(x_val), y_val))
            local_metrics.append(metric)
            sched.step(metric)  # each rank its own metric; the Scheduler averages them

    # the weights are identical too (DDP averaged the gradients, the lrs were the same)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    weights = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(weights, flat)
    all_metrics = [None] * world
    dist.all_gather_object(all_metrics, local_metrics)
    if rank == 0:
        Path(out_path).write_text(
            json.dumps(
                {
                    "world": world,
                    "mismatches": mismatches,
                    "lrs": lrs,
                    "metrics": all_metrics,
                    "weights_equal": all(torch.equal(weights[0], w) for w in weights[1:]),
                    "policy_state": sched.state_dict()["hyperparams"]["lr"]["states"][2],
                }
            )
        )
    del ddp  # DDP holds the process group; see docs/integrations.md on freeing it before exit
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def _torchrun(script, *args, cwd, timeout=120):
    """``torchrun --standalone --nproc-per-node 2 script args`` in its own session, so that a hang
    is killed with all its workers (killing only torchrun would leave them behind)."""
    from helpers import child_env, run_in_session

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    env = child_env(OMP_NUM_THREADS="1")
    code, output, _ = run_in_session(
        [*cmd, script, *args], env=env, cwd=cwd, timeout=timeout, stderr=subprocess.STDOUT
    )
    assert code == 0, output[-5000:]
    return output


def _needs_gloo():
    pytest.importorskip("torch")
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")


def test_two_ranks_see_identical_learning_rates(tmp_path):
    _needs_gloo()
    import lrlab
    from lrlab.policies import replay

    out = tmp_path / "ddp.json"
    _torchrun(__file__, out, cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["world"] == 2
    assert result["mismatches"] == 0
    assert result["weights_equal"]

    # the ranks really fed different metrics, and deciding on them locally would disagree
    m0, m1 = result["metrics"]
    assert len(m0) == STEPS // EVAL_EVERY and all(a != b for a, b in zip(m0, m1))
    policy = lrlab.from_config(POLICY)
    mean = [(a + b) / 2 for a, b in zip(m0, m1)]
    local = [replay(policy, m, steps_per_epoch=EVAL_EVERY).state.pops for m in (m0, m1)]
    agreed = replay(policy, mean, steps_per_epoch=EVAL_EVERY, steps=STEPS)
    print(f"policy pops: rank-local {local}, on the mean {agreed.state.pops}")
    assert local[0] != local[1], f"choose metrics on which the ranks would disagree: {local}"
    assert result["policy_state"]["pops"] == agreed.state.pops

    # and every rate is lrlab's: RALR, CLR, and the policy decided on the mean metric
    lrs = list(zip(*result["lrs"]))
    ralr, clr = lrlab.from_config(RALR), lrlab.from_config(CLR)
    assert list(lrs[0]) == pytest.approx([ralr(t) for t in range(STEPS)], rel=1e-12)
    assert list(lrs[1]) == pytest.approx([clr(t) for t in range(STEPS)], rel=1e-12)
    assert list(lrs[2]) == pytest.approx(list(agreed.lrs), rel=1e-9)


def test_docs_snippet(tmp_path):
    """The DDP snippet of docs/integrations.md, as written, under torchrun (it asserts itself that
    the ranks end with identical rates)."""
    import re

    _needs_gloo()
    text = (Path(__file__).parents[1] / "docs" / "integrations.md").read_text()
    code = re.search(r"<!-- snippet: ddp -->\s*```python\n(.*?)```", text, re.S).group(1)
    script = tmp_path / "train.py"
    script.write_text(code + "\nprint('rank', rank, 'final lr', sched.get_last_lr()[0])\n")
    output = _torchrun(script, cwd=tmp_path)
    assert output.count("final lr") == 2


if __name__ == "__main__":
    _worker(sys.argv[1])
