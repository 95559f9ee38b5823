"""Time per ``step()`` of lrlab.torch.Scheduler against torch's CyclicLR and LambdaLR.

All three drive the same optimizer (3 parameter groups, float lrs) for the same number of
steps; the script prints microseconds per step and the ratios, all from this one run.

    python benchmarks/step_overhead.py [--steps 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

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


def optimizer(groups: int, tensor_lr: bool = False):
    params = [torch.nn.Parameter(torch.zeros(4)) for _ in range(groups)]
    lr = torch.tensor(0.1) if tensor_lr else 0.1
    return torch.optim.SGD([{"params": [p]} for p in params], lr=lr)


def per_step_seconds(make, steps: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        sched = make()
        start = time.perf_counter()
        for _ in range(steps):
            sched.step()
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--groups", type=int, default=3)
    args = parser.parse_args()
    # the loop steps schedulers without an optimizer step on purpose; torch warns about that
    warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
    g = args.groups

    candidates = {
        "lrlab Scheduler (CLR triangular2)": lambda: Scheduler(optimizer(g), CLR),
        "lrlab Scheduler (RALR over cosine)": lambda: Scheduler(optimizer(g), RALR),
        "lrlab Scheduler (CLR, tensor lr)": lambda: Scheduler(optimizer(g, tensor_lr=True), CLR),
        "torch CyclicLR (triangular2)": lambda: torch.optim.lr_scheduler.CyclicLR(
            optimizer(g),
            base_lr=0.001,
            max_lr=0.006,
            step_size_up=2000,
            mode="triangular2",
            cycle_momentum=False,
        ),
        "torch CyclicLR (tensor lr)": lambda: torch.optim.lr_scheduler.CyclicLR(
            optimizer(g, tensor_lr=True),
            base_lr=0.001,
            max_lr=0.006,
            step_size_up=2000,
            mode="triangular2",
            cycle_momentum=False,
        ),
        "torch LambdaLR (constant lambda)": lambda: torch.optim.lr_scheduler.LambdaLR(
            optimizer(g), lambda t: 1.0
        ),
    }
    times = {
        name: per_step_seconds(make, args.steps, args.repeats) for name, make in candidates.items()
    }
    reference = times["torch CyclicLR (triangular2)"]
    print(
        f"{args.steps} steps x {args.repeats} repeats (best), {g} parameter groups, torch {torch.__version__}"
    )
    print(f"{'scheduler':40s} {'us/step':>9s} {'vs CyclicLR':>12s}")
    for name, seconds in times.items():
        print(f"{name:40s} {seconds * 1e6:9.2f} {seconds / reference:11.2f}x")
    ratio = times["lrlab Scheduler (CLR triangular2)"] / reference
    print(
        f"target: lrlab no slower than CyclicLR -> ratio {ratio:.2f} ({'met' if ratio <= 1 else 'NOT met'})"
    )

    # the share of a real training step (full table, more models: benchmarks/step_share.py)
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


if __name__ == "__main__":
    main()
