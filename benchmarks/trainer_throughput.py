"""Trials per minute of the lab trainer against a textbook DataLoader training loop.

Both train the same model (the MNIST-1D CNN by default) on the same tensors, for the same
epochs and batch size, with the same optimizer and lrlab schedule, and evaluate on the
validation and test sets after every epoch. The only differences are the ones the lab trainer
makes on purpose: batches by indexing in-memory tensors instead of a
``DataLoader(TensorDataset(...), shuffle=True)``, and evaluation in large batches. The script
prints both rates and their ratio, all measured in this one run (after one warm-up trial each).

    python benchmarks/trainer_throughput.py [--trials 3] [--epochs 10] [--batch-size 100]
                                            [--model cnn] [--task mnist1d] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lrlab import from_config
from lrlab.lab.models import build_model
from lrlab.lab.tasks import load_task
from lrlab.lab.trainer import TrialSpec, iterations_per_epoch, make_optimizer, train_trial
from lrlab.torch import Scheduler


def textbook_trial(spec: TrialSpec, task) -> float:
    """The loop from a PyTorch tutorial; returns its last test accuracy (so it is not idle)."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, task)
    optimizer = make_optimizer(model.parameters(), spec.optimizer)
    sched = Scheduler(optimizer, from_config(spec.schedule))
    train = DataLoader(
        TensorDataset(task.x_train, task.y_train), batch_size=spec.batch_size, shuffle=True
    )
    val = DataLoader(TensorDataset(task.x_val, task.y_val), batch_size=spec.batch_size)
    test = DataLoader(TensorDataset(task.x_test, task.y_test), batch_size=spec.batch_size)

    def evaluate(loader):
        model.eval()
        loss, correct, n = 0.0, 0, 0
        with torch.no_grad():
            for x, y in loader:
                out = model(x)
                loss += F.cross_entropy(out, y, reduction="sum").item()
                correct += (out.argmax(1) == y).sum().item()
                n += len(y)
        return loss / n, correct / n

    acc = 0.0
    for _ in range(spec.epochs):
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            sched.step()
        val_loss, _ = evaluate(val)
        _, acc = evaluate(test)
        sched.step(val_loss)
    return acc


def trials_per_minute(run, trials: int) -> tuple[float, list[float]]:
    run()  # warm-up: imports, allocator, first-call overheads
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 60.0 / statistics.mean(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist1d")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--trials", type=int, default=3, help="timed trials of each loop")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (sweeps use 1)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    task = load_task(args.task, data_dir=args.data_dir, cache_dir=args.cache_dir, device="cpu")
    steps = iterations_per_epoch(len(task.y_train), args.batch_size)
    spec = TrialSpec(
        task=args.task,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=0,
        schedule={"type": "cosine", "lr": 0.05, "total": steps * args.epochs},
    )
    print(
        f"{task!r}\nmodel {args.model}, {args.epochs} epochs x {steps} steps of batch "
        f"{args.batch_size}, {args.threads} thread(s), {args.trials} timed trials each, CPU"
    )

    lab, lab_times = trials_per_minute(
        lambda: train_trial(spec, task=task, device="cpu", threads=args.threads), args.trials
    )
    book, book_times = trials_per_minute(lambda: textbook_trial(spec, task), args.trials)
    print(
        f"lab trainer (in-memory batches): {lab:8.1f} trials/min  "
        f"({statistics.mean(lab_times):.2f} s/trial)"
    )
    print(
        f"textbook DataLoader loop:        {book:8.1f} trials/min  "
        f"({statistics.mean(book_times):.2f} s/trial)"
    )
    print(f"ratio lab / textbook:            {lab / book:8.2f}x")


if __name__ == "__main__":
    main()
