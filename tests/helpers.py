"""Helpers that several test files import (``from helpers import ...``; tests/ is on the path).

Fixtures live in ``tests/conftest.py``; these are plain functions because test modules need
them at import time (hypothesis settings) or call them with their own arguments.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

#: True under ``pytest -m "not integration"`` (set by tests/conftest.py): the fast suite.
FAST_SUITE = False


def fuzz_examples(full: int) -> int:
    """How many hypothesis examples a fuzz test runs.

    ``LRLAB_FUZZ_EXAMPLES`` when set (``LRLAB_FUZZ_EXAMPLES=10000`` for a long campaign); else
    ``full`` in the full suite and a fifth of it (at least 10) in the fast suite.
    """
    if "LRLAB_FUZZ_EXAMPLES" in os.environ:
        return int(os.environ["LRLAB_FUZZ_EXAMPLES"])
    return max(10, full // 5) if FAST_SUITE else full


def torch_values(make, steps, lr=1.0, key="lr", momentum=0.9):
    """The value of ``key`` torch's scheduler ``make(optimizer)`` sets after 0..steps-1 calls of
    ``step()``; a tuple of keys gives a tuple of arrays, from one run.

    The optimizer never steps: a schedule's rates do not depend on it, and ``optimizer.step()``
    is most of the time of a long run.
    """
    keys = (key,) if isinstance(key, str) else tuple(key)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=momentum)
    sched = make(opt)
    out = np.empty((len(keys), steps))
    group = opt.param_groups[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # step() without optimizer.step(): the lr is the same
        for t in range(steps):
            for i, k in enumerate(keys):
                out[i, t] = group[k]
            sched.step()
    return out[0] if isinstance(key, str) else tuple(out)


def assert_rel(actual, expected, rtol):
    """Every element of ``actual`` within relative ``rtol`` of ``expected``."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    worst = np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-300))
    assert worst <= rtol, f"worst relative error {worst:.3g} > {rtol}"


def make_opt(lr=0.1, tensor=False, groups=1):
    """SGD with momentum 0.9 over ``groups`` param groups of one 2-element parameter each;
    ``tensor=True`` gives the lr as a tensor."""
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(groups)]
    lr = torch.tensor(lr) if tensor else lr
    return torch.optim.SGD([{"params": [p]} for p in params], lr=lr, momentum=0.9)


#: The batch size of the small MNIST-1D trials (the ``task`` fixture of tests/conftest.py).
BATCH = 50


def spec_for(schedule=None, **kw):
    """A 3-epoch CNN trial on the small MNIST-1D, constant lr 0.05 unless told otherwise."""
    from lrlab.lab.trainer import TrialSpec

    base = dict(task="mnist1d", model="cnn", epochs=3, batch_size=BATCH, seed=0)
    base.update(kw)
    return TrialSpec(schedule=schedule or {"type": "constant", "lr": 0.05}, **base)


def numbers(result) -> list:
    """Everything a trial computes, without the timings."""
    return [dataclasses.replace(e, seconds=0.0) for e in result.epochs] + [
        (
            result.diverged,
            result.best_epoch,
            result.best_val_loss,
            result.best_test_acc,
            result.final_test_acc,
        )
    ]


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child Python: lrlab's ``src`` first on ``PYTHONPATH``
    (so a child runs this checkout, installed or not), plus ``extra``."""
    import lrlab

    src = str(Path(lrlab.__file__).resolve().parents[1])
    path = os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_in_session(cmd, *, env, cwd, timeout, stderr=subprocess.PIPE):
    """Run ``cmd`` in its own session; on timeout kill the whole process group (a launcher and
    its workers: killing only the launcher would leave them behind) and fail the test.
    Returns (exit status, stdout, stderr)."""
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        env=env,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s:\n{out[-2000:]}\n{(err or '')[-3000:]}")
    return proc.returncode, out, err


def done_keys(db) -> set[str]:
    """Keys of the trials a results database holds as done, read with plain SQLite (not the
    store under test), while a sweep may still be writing it; empty before it exists."""
    if not Path(db).exists():
        return set()
    con = sqlite3.connect(db, timeout=5)
    try:
        return {r[0] for r in con.execute("SELECT key FROM trials WHERE status='done'")}
    except sqlite3.OperationalError:  # tables not created yet
        return set()
    finally:
        con.close()


class RecordingTrial:
    """A stand-in for the lab's trial object: a schedule, ``scheduler(opt)``, and the reports."""

    def __init__(self, schedule, settings=None, seed=0):
        self.schedule = schedule
        self.settings = dict(settings or {})
        self.seed = seed
        self.reports: list[tuple[int, dict]] = []

    def scheduler(self, optimizer):
        from lrlab.torch import Scheduler

        return Scheduler(optimizer, self.schedule)

    def report(self, epoch, **metrics):
        self.reports.append((epoch, metrics))
