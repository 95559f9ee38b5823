"""The least-squares validation of the range test: max_lr against the known divergence rate.

Runs the cases of ``tests/test_finder_least_squares.py`` (the same problems, built by that
module, so the test and the doc cannot drift apart) and prints exactly the figure
``range-test-least-squares`` of docs/range-test.md. A few seconds on one CPU core.
``scripts/docs_figures.py`` regenerates the doc's copy (``--check``: exits 1 when it is stale).

    .venv/bin/python experiments/range_test_least_squares.py
    .venv/bin/python scripts/docs_figures.py --check --only range-test-least-squares
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_finder_least_squares import CASES, run_case

from lrlab.finder.stability import estimate_edge

HEAVY = [(k, m, 0.9) for k in (1, 10, 100, 1000) for m in ("linear", "exp")]


def case_figures(kappa, mode, momentum) -> dict:
    res, sug, edge, _ = run_case(kappa, mode, momentum)
    est = estimate_edge(res.lr, res.loss, res.config["optimizer_model"])
    fall = sug.candidates.get("fall")
    return {
        "stopped": res.stop_reason,
        "stop": float(res.lr[-1]) / edge,
        "edge": edge,
        "max_lr": None if sug.max_lr is None else sug.max_lr / edge,
        "fall": None if fall is None else fall / edge,
        "estimate": None if est is None else est["lr"] / edge,
        "codes": sug.codes,
    }


def _span(values, fmt="{:.3f}") -> str:
    v = [x for x in values if x is not None]
    return f"{fmt.format(min(v))}-{fmt.format(max(v))}" if v else "n/a"


def figures_markdown() -> str:
    rows = {case: case_figures(*case) for case in CASES}
    lines = [
        "| condition number | sweep | momentum | edge (closed form) | sweep stopped at (x edge) "
        "| **max_lr / edge** | fall onset x 0.5 / edge | edge estimate / edge |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (kappa, mode, mu), f in rows.items():
        lines.append(
            f"| {kappa} | {mode} | {mu:g} | {f['edge']:.4g} | {f['stop']:.2f} "
            f"| **{f['max_lr']:.3f}** | {f['fall']:.3f} | {f['estimate']:.3f} |"
        )
    ratios = [f["max_lr"] for f in rows.values()]
    by_mode = {m: [f for (_, mm, _), f in rows.items() if mm == m] for m in ("linear", "exp")}
    lines += [
        "",
        f"Over these cases `max_lr / edge` is {_span(ratios)} (median "
        f"{np.median(ratios):.3f}); the fall onset x 0.5 alone is "
        f"{_span([f['fall'] for f in by_mode['linear']])} of the edge for the linear sweeps and "
        f"{_span([f['fall'] for f in by_mode['exp']])} for the exponential ones (the loss turns "
        f"up {_span([2 * f['fall'] for f in by_mode['linear']], '{:.2f}')}x and "
        f"{_span([2 * f['fall'] for f in by_mode['exp']], '{:.2f}')}x beyond the edge); the "
        f"blow-up-rate estimate is {_span([f['estimate'] for f in rows.values()])} of the edge.",
    ]
    heavy = [case_figures(*case) for case in HEAVY]
    flat = [f"{k} {m}" for (k, m, _), f in zip(HEAVY, heavy) if f["max_lr"] is None]
    lines += [
        "",
        f"Momentum 0.9 (not asserted; the same 8 problems and sweeps): `max_lr / edge` "
        f"{_span([f['max_lr'] for f in heavy])}, edge estimate / edge "
        f"{_span([f['estimate'] for f in heavy])}; no bounds (`flat`) for: "
        f"{', '.join(flat) or 'none'}.",
    ]
    return "\n".join(lines)


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(1)
    print(figures_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
