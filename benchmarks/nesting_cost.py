"""Evaluation cost against nesting depth: one value of a warmup nested d deep, d = 1..50.

Before the fix the cost doubled per level (25 deep took 28 s for one value); it must grow
linearly. Prints, per depth, the median time of one scalar call and of a 1000-step ``values``
call, and the ratio to depth 1 (linear cost: a ratio about equal to the depth, or less).

    PYTHONPATH=src .venv/bin/python benchmarks/nesting_cost.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from lrlab.schedules import from_config


def nested(kind: str, depth: int) -> dict:
    config = {"type": "cosine", "lr": 0.1, "total": 1000}
    for _ in range(depth):
        if kind == "warmup":
            config = {"type": "warmup", "steps": 3, "base": config}
        elif kind == "kdecay":
            config = {"type": "kdecay", "form": "additive", "k": 2.0, "total": 1000, "base": config}
        else:
            config = {
                "type": "join",
                "schedules": [{"type": "constant", "lr": 0.1}, config],
                "boundaries": [5],
            }
    return config


def median_seconds(fn, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    steps = np.arange(1000)
    for kind in ("warmup", "kdecay", "join"):
        base_scalar = base_vector = None
        print(f"{kind}: depth, one value (us), ratio, 1000 values (ms), ratio")
        # a join level is a dict and a list: 30 joins are 60 levels, near the nesting limit
        for depth in (1, 5, 10, 25, 30) if kind == "join" else (1, 5, 10, 25, 50):
            schedule = from_config(nested(kind, depth))
            scalar = median_seconds(lambda s=schedule: [s(t) for t in (0, 100, 900)]) / 3
            vector = median_seconds(lambda s=schedule: s.values(steps))
            base_scalar, base_vector = base_scalar or scalar, base_vector or vector
            print(
                f"  {depth:3d} {scalar * 1e6:9.1f} {scalar / base_scalar:6.1f}x"
                f" {vector * 1e3:9.3f} {vector / base_vector:6.1f}x"
            )
        assert scalar < 0.01, f"a {depth}-deep {kind} takes {scalar * 1e3:.1f} ms for one value"


if __name__ == "__main__":
    main()
