"""Run one lab trial data-parallel under ``torchrun``::

    torchrun --standalone --nproc-per-node 2 -m lrlab.lab.torchrun_trial \\
        --spec spec.json [--out result.json] [--device auto|cpu|cuda] [--threads 1]

Every rank reads the :class:`~lrlab.lab.trainer.TrialSpec` JSON (``TrialSpec.to_dict()``), joins
the process group torchrun describes in the environment (gloo on the CPU, nccl on CUDA, one GPU
per rank: ``cuda:$LOCAL_RANK``) and calls :func:`~lrlab.lab.trainer.train_trial`, which trains
with DistributedDataParallel on a shard of every global batch (see its docstring). Rank 0 writes
``TrialResult.to_dict()`` to ``--out`` (atomically) and prints a one-line summary. Started
without torchrun (no ``WORLD_SIZE`` in the environment) it runs the trial in this one process.

A bad spec, a missing data set or an unwritable ``--out`` is one ``error:`` line on stderr and
exit status 2 (checked before the process group is joined where possible).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

from lrlab.errors import ConfigError, LrlabError, one_line

PROG = "lrlab.lab.torchrun_trial"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"torchrun ... -m {PROG}", description="Train one lab trial data-parallel."
    )
    parser.add_argument("--spec", required=True, help="a TrialSpec as JSON (TrialSpec.to_dict())")
    parser.add_argument("--out", help="write the TrialResult JSON here (rank 0)")
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="auto: CUDA when available (nccl, GPU = LOCAL_RANK), else CPU (gloo)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per rank")
    return parser


def read_spec(path: str):
    from lrlab.lab.trainer import TrialSpec

    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--spec {path}: not valid JSON: {exc}") from None
    return TrialSpec.from_dict(data)


def run(args: argparse.Namespace) -> int:
    spec = read_spec(args.spec)  # before joining the group: a bad spec fails fast on every rank
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")

    import torch
    import torch.distributed as dist

    from lrlab.atomic import atomic_write_text
    from lrlab.lab.trainer import rank_and_world, train_trial

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available here (use --device cpu)")
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = "cpu"
    if use_cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    joined = "WORLD_SIZE" in os.environ and not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        rank, world = rank_and_world()
        result = train_trial(spec, device=device, threads=args.threads)
        if rank == 0:
            if args.out:
                atomic_write_text(args.out, json.dumps(result.to_dict(), indent=2) + "\n")
            print(
                f"trial {spec.key()} ({spec.task}, {spec.model}) on {world} rank(s), {device}: "
                f"{len(result.epochs)} epochs{' (diverged)' if result.diverged else ''}, "
                f"best epoch {result.best_epoch} val_loss {result.best_val_loss:.4f} "
                f"test_acc {result.best_test_acc:.4f}, final test_acc {result.final_test_acc:.4f}, "
                f"{result.wall_time:.1f} s" + (f" -> {args.out}" if args.out else ""),
                flush=True,
            )
    finally:
        if joined:
            # the trial's DDP wrapper, if still in a reference cycle, holds the group and its gloo
            # threads alive past interpreter shutdown, where they can abort (docs/integrations.md)
            gc.collect()
            dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except LrlabError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing --spec file, an unwritable --out, ...
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
