"""Time per ``step()`` of lrlab.torch.Scheduler against torch's CyclicLR and LambdaLR.

All drive the same kind of optimizer (3 parameter groups) for the same number of steps, in
interleaved rounds; the script prints median microseconds per step and the median ratio to
float-lr CyclicLR, all from this one run, and checks the targets: lrlab's ``step()`` at most
0.5x CyclicLR's with float lrs, and at most 1x CyclicLR's float-lr step with tensor lrs.

    python benchmarks/step_overhead.py [--steps 20000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from lrlab.errors import ConfigError
from lrlab.torch import Scheduler

CLR = {
    "type": "cyclic",
    "mode": "triangular2",
    "base_lr": 0.001,
    "max_lr": 0.006,
    "step_size_up": 2000,
}
RALR = {
    "type": "ralr",
    "base": {"type": "cosine", "lr": 0.1, "total": 100_000},
    "period": 391,
    "seed": 0,
}


# torch's CyclicLR momentum (max_momentum 0.9 -> base_momentum 0.8) as an lrlab schedule:
# 0.9 - cyclic(0 -> 0.1), the same arithmetic as torch (tests/test_torch_hyperparams.py)
MOMENTUM = {
    "type": "cyclic",
    "mode": "triangular2",
    "base_lr": 0.9,
    "max_lr": 0.8,
    "step_size_up": 2000,
}
REFERENCE = "torch CyclicLR (triangular2)"
TARGETS = {"lrlab Scheduler (CLR triangular2)": 0.5, "lrlab Scheduler (CLR, tensor lr)": 1.0}


def optimizer(groups: int, tensor_lr: bool = False, momentum: bool = False):
    params = [torch.nn.Parameter(torch.zeros(4)) for _ in range(groups)]
    lr = torch.tensor(0.1) if tensor_lr else 0.1
    return torch.optim.SGD(
        [{"params": [p]} for p in params], lr=lr, momentum=0.9 if momentum else 0.0
    )


def per_step_seconds(make, steps: int) -> float:
    sched = make()
    start = time.perf_counter()
    for _ in range(steps):
        sched.step()
    return (time.perf_counter() - start) / steps


def cyclic_lr(groups: int, tensor_lr: bool = False, momentum: bool = False):
    return torch.optim.lr_scheduler.CyclicLR(
        optimizer(groups, tensor_lr, momentum),
        base_lr=0.001,
        max_lr=0.006,
        step_size_up=2000,
        mode="triangular2",
        cycle_momentum=momentum,
    )


def candidates(g: int) -> dict:
    made = {
        "lrlab Scheduler (CLR triangular2)": lambda: Scheduler(optimizer(g), CLR),
        "lrlab Scheduler (RALR over cosine)": lambda: Scheduler(optimizer(g), RALR),
        "lrlab Scheduler (CLR, tensor lr)": lambda: Scheduler(optimizer(g, tensor_lr=True), CLR),
        "lrlab Scheduler (CLR lr + momentum)": lambda: Scheduler(
            optimizer(g, momentum=True), lr=CLR, momentum=MOMENTUM
        ),
        "torch CyclicLR (triangular2)": lambda: cyclic_lr(g),
        "torch CyclicLR (tensor lr)": lambda: cyclic_lr(g, tensor_lr=True),
        "torch CyclicLR (lr + momentum)": lambda: cyclic_lr(g, momentum=True),
        "torch LambdaLR (constant lambda)": lambda: torch.optim.lr_scheduler.LambdaLR(
            optimizer(g), lambda t: 1.0
        ),
    }
    try:
        made["lrlab Scheduler (CLR lr + momentum)"]()
    except ConfigError as exc:  # the cyclic type does not take a descending cycle yet
        print(f"(no lrlab momentum row: {exc})")
        del made["lrlab Scheduler (CLR lr + momentum)"]
    return made


def rounds(made: dict, steps: int, repeats: int) -> tuple[dict, dict]:
    """Round-robin: every round measures every candidate once, so a change in machine load hits
    all alike; each round's ratios are taken against that round's float-lr CyclicLR."""
    times: dict[str, list[float]] = {name: [] for name in made}
    ratios: dict[str, list[float]] = {name: [] for name in made}
    for _ in range(repeats):
        this_round = {name: per_step_seconds(make, steps) for name, make in made.items()}
        for name, seconds in this_round.items():
            times[name].append(seconds)
            ratios[name].append(seconds / this_round[REFERENCE])
    return times, ratios


def share_of_a_training_step() -> None:
    """The share of a real training step (full table, more models: benchmarks/step_share.py)."""
    from step_share import MODELS, SCHEDULES, measure

    torch.set_num_threads(1)
    print("\nshare of one training step (MNIST-1D CNN, batch 50, 1 thread, float lr, medians):")
    for name, config in [
        ("lrlab CLR triangular2", SCHEDULES["CLR triangular2"]),
        ("torch CyclicLR", "torch CyclicLR"),
    ]:
        step_us, sched_us, share = measure(
            MODELS["cnn1d (MNIST-1D, batch 50)"],
            config,
            steps=400,
            warmup=50,
            tensor_lr=False,
            device="cpu",
        )
        print(f"{name:40s} step {step_us:8.1f} us, scheduler {sched_us:6.2f} us = {share:.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--groups", type=int, default=3)
    args = parser.parse_args()
    # the loop steps schedulers without an optimizer step on purpose; torch warns about that
    warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
    made = candidates(args.groups)
    times, ratios = rounds(made, args.steps, args.repeats)
    print(
        f"{args.steps} steps x {args.repeats} rounds (medians), {args.groups} parameter groups, "
        f"torch {torch.__version__}"
    )
    print(f"{'scheduler':40s} {'us/step':>9s} {'vs CyclicLR':>12s}")
    for name in made:
        us = statistics.median(times[name]) * 1e6
        print(f"{name:40s} {us:9.2f} {statistics.median(ratios[name]):11.2f}x")
    for name, target in TARGETS.items():
        ratio = statistics.median(ratios[name])
        verdict = "met" if ratio <= target else "NOT met"
        print(f"target: {name} <= {target}x float CyclicLR -> {ratio:.2f} ({verdict})")
    share_of_a_training_step()


if __name__ == "__main__":
    main()
