"""The share of a training step spent in ``lrlab.torch.Scheduler.step()``, for small models.

Each configuration trains a small model on random data (forward, backward, ``optimizer.step()``,
``zero_grad``, ``sched.step()``) and times the scheduler call and the whole step separately with
``time.perf_counter``. It prints, from this one run, the median microseconds per step, the
scheduler's microseconds, and its share of the step (target: under 1%); torch's own CyclicLR in
the same loop is the reference row. Steps stay on the CPU
with ``--threads`` torch threads (a GPU step is shorter, so pass ``--device cuda`` to see that case).

    python benchmarks/step_share.py [--steps 600] [--warmup 50] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lrlab.torch import Scheduler

SCHEDULES = {
    "CLR triangular2": {
        "type": "cyclic",
        "mode": "triangular2",
        "base_lr": 0.001,
        "max_lr": 0.006,
        "step_size_up": 200,
    },
    # one draw per epoch, as RALR specifies (an epoch of 50 iterations here)
    "RALR over cosine": {
        "type": "ralr",
        "base": {"type": "cosine", "lr": 0.05, "total": 10_000},
        "period": 50,
        "seed": 0,
    },
    "plateau policy x cosine": {
        "type": "policy",
        "trigger": "plateau",
        "factor": 0.5,
        "patience": 2,
        "schedule": {"type": "cosine", "lr": 0.05, "total": 10_000},
    },
}


def mlp():
    """The MNIST-1D repo's MLP on 8x8 digits: 64 -> 100 -> 100 -> 10 (about 18k parameters)."""
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    )
    return model, (64, 64)


def cnn1d():
    """MNIST-1D's CNN: three stride-2 Conv1d(25) layers on a 40-sample signal, batch 50."""
    model = torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 40)),
        torch.nn.Conv1d(1, 25, 5, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv1d(25, 25, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv1d(25, 25, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(125, 10),
    )
    return model, (50, 40)


MODELS = {"mlp (digits, batch 64)": mlp, "cnn1d (MNIST-1D, batch 50)": cnn1d}


def measure(make_model, config, *, steps: int, warmup: int, tensor_lr: bool, device: str):
    torch.manual_seed(0)
    model, (batch, features) = make_model()
    model = model.to(device)
    lr = torch.tensor(0.01, device=device) if tensor_lr else 0.01
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    if config == "torch CyclicLR":  # the reference: torch's own scheduler, same loop
        sched = torch.optim.lr_scheduler.CyclicLR(
            opt,
            base_lr=0.001,
            max_lr=0.006,
            step_size_up=200,
            mode="triangular2",
            cycle_momentum=False,
        )
    else:
        sched = Scheduler(opt, config)
    x = torch.randn(batch, features, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    step_times, sched_times = [], []
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        t1 = time.perf_counter()
        sched.step()
        if i % 100 == 99 and isinstance(sched, Scheduler):
            sched.step(loss.item())  # a policy also gets a metric now and then
        t2 = time.perf_counter()
        if i >= warmup:
            step_times.append(t2 - t0)
            sched_times.append(t2 - t1)
    step, sched_ = statistics.median(step_times), statistics.median(sched_times)
    return step * 1e6, sched_ * 1e6, sched_ / step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.device}, {args.threads} thread(s), "
        f"{args.steps} timed steps (medians)"
    )
    header = f"{'model':28} {'schedule':26} {'lr':6} {'step us':>9} {'sched us':>9} {'share':>7}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for model_name, make_model in MODELS.items():
        for sched_name, config in [
            *SCHEDULES.items(),
            ("torch CyclicLR triangular2", "torch CyclicLR"),
        ]:
            for tensor_lr in (False, True):
                step_us, sched_us, share = measure(
                    make_model,
                    config,
                    steps=args.steps,
                    warmup=args.warmup,
                    tensor_lr=tensor_lr,
                    device=args.device,
                )
                if isinstance(config, dict):
                    worst = max(worst, share)
                print(
                    f"{model_name:28} {sched_name:26} {'tensor' if tensor_lr else 'float':6} "
                    f"{step_us:9.1f} {sched_us:9.2f} {share:7.2%}"
                )
    verdict = "under" if worst < 0.01 else "OVER"
    print(f"largest lrlab share: {worst:.2%} ({verdict} the 1% target)")


if __name__ == "__main__":
    main()
