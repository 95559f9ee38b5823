"""Trials per minute: today's one-by-one lab against K trials trained at once (lrlab.lab.batched).

Both sides run as the sweep runs them: ``--workers`` processes (default 2) with one torch thread
each, started together behind a barrier once each has loaded the task and warmed up. One by
one, each worker trains its trials with ``train_trial``; batched, each worker trains one batch of
K trials with ``train_trials`` (engine ``bmm``: hand-written batched matrix products, the lab's
choice; ``vmap``: ``torch.func.vmap`` over ``functional_call``, kept for comparison). The trials
are the default study's (its schedules, seeds, batch size and optimizer), with fewer epochs so
the run is short: trials per minute is what counts. The MLP rows train the same specs with the
MNIST-1D MLP.

    PYTHONPATH=src python benchmarks/batched_trials.py            # CNN and MLP, K = 20, ~1-2 min
    PYTHONPATH=src python benchmarks/batched_trials.py --k 10 20 40 --models cnn

Only ratios measured in the same run mean anything. On a shared machine the wall-time figures
move with the other load; the CPU-time figures (each worker's process time) much less.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import time


def _worker(kind, specs, engine, barrier, queue) -> None:
    import torch

    from lrlab.lab.batched import train_trials
    from lrlab.lab.tasks import load_task
    from lrlab.lab.trainer import train_trial

    torch.set_num_threads(1)
    task = load_task(specs[0].task, device="cpu")
    warm = [dataclasses.replace(s, epochs=1) for s in specs[:2]]
    small = task.subset(200, 50, 50)
    if kind == "one":
        train_trial(warm[0], task=small)
    else:
        train_trials(warm, task=small, engine=engine)
    barrier.wait()
    start, cpu = time.perf_counter(), time.process_time()
    if kind == "one":
        for spec in specs:
            train_trial(spec, task=task, threads=1)
    else:
        train_trials(specs, task=task, threads=1, engine=engine)
    queue.put((time.perf_counter() - start, time.process_time() - cpu))


def trials_per_minute(kind: str, shares: list[list], engine: str = "bmm") -> tuple[float, float]:
    """Run one share of trials per worker process, all at once: trials per minute of the whole,
    by wall time and by CPU time (the slowest worker's; on a quiet machine both agree, on a
    shared one the CPU-time figure is what the code would do with its cores to itself)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(len(shares)), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(kind, share, engine, barrier, queue)) for share in shares
    ]
    for p in procs:
        p.start()
    times = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    trials = sum(len(s) for s in shares)
    return 60.0 * trials / max(t[0] for t in times), 60.0 * trials / max(t[1] for t in times)


def study_specs(model: str, epochs: int, count: int) -> list:
    """``count`` trials of the default study (seed-major: every schedule of a seed, then the
    next seed), with ``epochs`` epochs and model ``model``."""
    from lrlab.lab.study import load_study

    study = load_study("default", seeds=-(-count // 8), epochs=epochs)
    specs = [c.spec for c in study.cells][:count]
    return [s if s.model == model else dataclasses.replace(s, model=model) for s in specs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "mlp"])
    parser.add_argument("--k", nargs="+", type=int, default=[20], help="trials per batch")
    parser.add_argument("--engines", nargs="+", default=["bmm", "vmap"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one-by-one", type=int, default=4, help="trials per worker, today's lab")
    args = parser.parse_args()

    print(
        f"default study's trials, {args.epochs} epochs, {args.workers} worker processes x "
        f"1 thread, CPU"
    )
    for model in args.models:
        n = args.workers * args.one_by_one
        specs = study_specs(model, args.epochs, n)
        wall, cpu = trials_per_minute(
            "one", [specs[i :: args.workers] for i in range(args.workers)]
        )
        print(f"{model}: one by one (today's lab): {wall:8.1f} trials/min ({cpu:8.1f} by CPU time)")
        for engine in args.engines:
            for k in args.k:
                specs = study_specs(model, args.epochs, k * args.workers)
                shares = [specs[i * k : (i + 1) * k] for i in range(args.workers)]
                b_wall, b_cpu = trials_per_minute("batch", shares, engine)
                print(
                    f"{model}: batched {engine:4s} K={k:3d}:       {b_wall:8.1f} trials/min "
                    f"({b_cpu:8.1f} by CPU time)  ratio {b_wall / wall:5.2f}x "
                    f"({b_cpu / cpu:5.2f}x by CPU time)"
                )


if __name__ == "__main__":
    main()
