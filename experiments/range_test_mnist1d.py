"""Do the range test's bounds, used in triangular2, match the best fixed learning rate of a grid?

For each model on MNIST-1D:

1. run ``lrlab.range_test`` exactly as ``lrlab find`` does by default (geometric sweep 1e-4..10
   over 4 epochs, batch 128, SGD momentum 0.9 / weight decay 5e-4 as in the lab's trainer,
   3 repeats, validation accuracy every step) and read ``base_lr`` / ``max_lr`` / ``lr`` and
   fastai's ``valley`` / ``steep`` / ``minimum``;
2. train a small grid of constant learning rates for ``--fixed-epochs`` epochs;
3. train ``triangular2`` between the suggested bounds for ``--cycles`` cycles of
   ``2 x --step-epochs`` epochs (fewer epochs than the grid), a constant schedule at the
   suggested single ``lr`` and one at fastai's ``valley`` for ``--fixed-epochs``;
4. run a linear sweep 0.001..1 (Smith's protocol; range test only, nothing trained);

every schedule with ``--seeds`` seeds, through the lab's batched trainer
(``lrlab.lab.batched.train_trials``, as ``lrlab compare`` trains them).

Output: stdout is exactly the figure ``range-test-mnist1d`` of docs/range-test.md (progress
goes to stderr); ``--out`` gets ``figures.md``, ``figures.json`` (the same numbers),
``results.json`` (everything, curves included), ``range_test_<model>.json/png`` and
``curves_<model>.png``. ``scripts/docs_figures.py`` regenerates the doc's copy (``--check``:
exits 1 when it is stale).

    .venv/bin/python experiments/range_test_mnist1d.py
    .venv/bin/python scripts/docs_figures.py --check --only range-test-mnist1d
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

OPTIMIZER = {"type": "sgd", "momentum": 0.9, "weight_decay": 5e-4}
BATCH = 128


def finite(o):
    """``o`` with every non-finite float as None (JSON has no NaN)."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [finite(v) for v in o]
    return o


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def mean_sd(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def epochs_to_reach(curve, target) -> int | None:
    for i, acc in enumerate(curve):
        if acc >= target:
            return i + 1
    return None


def iterations_per_epoch(n_train: int) -> int:
    # as the lab's trainer counts them: the last, smaller batch is kept
    return -(-n_train // BATCH)


def find(model_name, task, *, mode, start_lr, end_lr, steps, repeats):
    """The range test as ``lrlab find`` runs it (model seeded with 0, runs seeded 0, 1, 2)."""
    from lrlab.finder import range_test
    from lrlab.lab.models import build_model
    from lrlab.lab.trainer import make_optimizer

    torch.manual_seed(0)
    model = build_model(model_name, task)
    opt = make_optimizer(model.parameters(), OPTIMIZER)
    return range_test(
        model,
        opt,
        torch.nn.CrossEntropyLoss(),
        (task.x_train, task.y_train),
        val_data=(task.x_val, task.y_val),
        start_lr=start_lr,
        end_lr=end_lr,
        steps=steps,
        mode=mode,
        batch_size=BATCH,
        repeats=repeats,
        val_every=1,
        seed=0,
    )


def train(model_name, schedules: dict, seeds, task) -> dict:
    """Every row's trials (``schedules``: name -> (config, epochs)) at once, through the lab's
    batched trainer, as ``lrlab compare`` trains them: a trial's numbers do not depend on its
    batch-mates (``lrlab.lab.batched.train_trials``)."""
    from lrlab.lab.batched import train_trials
    from lrlab.lab.trainer import TrialSpec

    keys = [(name, seed) for name in schedules for seed in seeds]
    specs = [
        TrialSpec(
            task="mnist1d",
            model=model_name,
            schedule=schedules[name][0],
            epochs=schedules[name][1],
            batch_size=BATCH,
            seed=seed,
            optimizer=OPTIMIZER,
        )
        for name, seed in keys
    ]
    results = train_trials(specs, task=task, threads=1)
    rows = {}
    for name, (schedule, epochs) in schedules.items():
        runs = [r for (n, _), r in zip(keys, results) if n == name]
        rows[name] = {
            "schedule": schedule,
            "epochs": epochs,
            "curves": [[e.test_acc for e in r.epochs] for r in runs],
            "final": [r.final_test_acc for r in runs],
            "best_val_pick": [r.best_test_acc for r in runs],
        }
    return rows


def pct(m_sd) -> str:
    m, s = m_sd
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def bound_figures(sug) -> dict:
    """The reported readings of a suggestion, rounded as the doc shows them."""
    out = {}
    for key in ("base_lr", "max_lr", "lr"):
        s = sug.spread.get(key)
        value = getattr(sug, key)
        out[key] = {
            "value": None if value is None else f"{value:.3g}",
            "iqr": None if s is None or s.n < 2 else [f"{s.q25:.3g}", f"{s.q75:.3g}"],
        }
    out["fastai"] = {k: None if v is None else f"{v:.3g}" for k, v in sug.fastai.items()}
    out["warnings"] = list(dict.fromkeys(sug.codes))
    return out


def study(model_name, task, args) -> tuple[dict, dict]:
    """(figures, everything) for one model."""
    per_epoch = iterations_per_epoch(len(task.y_train))
    steps = max(100, 4 * per_epoch)
    t0 = time.perf_counter()
    rt = find(model_name, task, mode="exp", start_lr=1e-4, end_lr=10.0, steps=steps, repeats=3)
    sug = rt.suggest()
    rt.to_json(args.out / f"range_test_{model_name}.json", suggestion=sug)
    rt.plot(args.out / f"range_test_{model_name}.png", suggestion=sug)
    log(f"[{model_name}] range test ({time.perf_counter() - t0:.0f} s): {sug}")
    if not sug.ok:
        raise SystemExit(f"no usable suggestion for {model_name}: {sug.codes}")
    seeds = list(range(args.seeds))
    clr_epochs = 2 * args.step_epochs * args.cycles
    cyc = sug.to_cyclic_config(step_size_up=args.step_epochs * per_epoch)
    valley = sug.fastai["valley"]
    schedules = {
        **{
            f"constant {lr:g}": ({"type": "constant", "lr": lr}, args.fixed_epochs)
            for lr in args.grid
        },
        "triangular2": (cyc, clr_epochs),
        "suggested lr": ({"type": "constant", "lr": sug.lr}, args.fixed_epochs),
        "fastai valley": ({"type": "constant", "lr": valley}, args.fixed_epochs),
    }
    rows = train(model_name, schedules, seeds, task)
    for key, row in rows.items():
        log(f"[{model_name}] {key}: final {mean_sd(row['final'])}")
    log(f"[{model_name}] trained ({time.perf_counter() - t0:.0f} s)")
    linear = find(
        model_name, task, mode="linear", start_lr=1e-3, end_lr=1.0, steps=steps, repeats=3
    )
    grid_keys = [f"constant {lr:g}" for lr in args.grid]
    best_key = max(grid_keys, key=lambda k: np.mean(rows[k]["final"]))
    target = float(np.mean(rows[best_key]["final"])) - 0.01
    labels = {  # (schedule, what follows it in the table)
        "triangular2": (
            f"triangular2 [{sug.base_lr:.3g}, {sug.max_lr:.3g}]",
            f", half cycle {args.step_epochs} epochs",
        ),
        "suggested lr": (f"constant at the suggested lr = {sug.lr:.3g}", ""),
        "fastai valley": (f"constant at fastai's valley = {valley:.3g}", ""),
        best_key: (best_key, " (best of the grid)"),
    }
    table = []
    for key, row in rows.items():
        row["epochs_to_target"] = [epochs_to_reach(c, target) for c in row["curves"]]
        at_clr = [c[min(clr_epochs, len(c)) - 1] for c in row["curves"]]
        schedule, note = labels.get(key, (key, ""))
        table.append(
            {
                "schedule": schedule,
                "note": note,
                "bold": key in (best_key, "triangular2"),
                "epochs": row["epochs"],
                "final": pct(mean_sd(row["final"])),
                "at_clr_epochs": pct(mean_sd(at_clr)),
                "best_val_pick": pct(mean_sd(row["best_val_pick"])),
                "epochs_to_target": row["epochs_to_target"],
            }
        )
    figures = {
        "model": model_name,
        "steps": steps,
        "stops": [r.stop_reason for r in rt.runs],
        "signal": sug.signal,
        **bound_figures(sug),
        "target": f"{100 * target:.1f}",
        "clr_epochs": clr_epochs,
        "table": table,
        "linear": {
            "stops": [r.stop_reason for r in linear.runs],
            **bound_figures(linear.suggest()),
        },
    }
    everything = {
        "suggestion": sug.to_dict(),
        "cyclic_config": cyc,
        "best_fixed": best_key,
        "rows": rows,
    }
    plot_curves(model_name, rows, labels, target, args.out)
    return figures, everything


def plot_curves(model_name, rows, labels, target, out) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), constrained_layout=True)
    ax = fig.add_subplot(1, 1, 1)
    for key, row in rows.items():
        c = np.asarray(row["curves"]).mean(axis=0)
        ax.plot(
            np.arange(1, len(c) + 1),
            100 * c,
            lw=2 if key in labels else 1,
            label="".join(labels.get(key, (key, ""))),
        )
    ax.axhline(100 * target, color="gray", ls=":", lw=1, label="target")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%, mean of seeds)")
    ax.set_title(f"MNIST-1D {model_name}: triangular2 in the range-test bounds vs a fixed grid")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.savefig(out / f"curves_{model_name}.png", dpi=110)


def _bounds_text(f: dict) -> str:
    parts = []
    for key in ("base_lr", "max_lr", "lr"):
        b = f[key]
        iqr = f" (IQR {b['iqr'][0]}-{b['iqr'][1]})" if b["iqr"] and key != "lr" else ""
        parts.append(f"`{key} = {b['value']}`{iqr}")
    warnings = ", ".join(f"`{w}`" for w in f["warnings"]) or "none"
    return f"{', '.join(parts)}; warnings: {warnings}"


def _model_markdown(f: dict) -> list[str]:
    name = {"cnn": "reference CNN", "mlp": "reference MLP"}.get(f["model"], f["model"])
    fastai = ", ".join(f"`{k} = {v}`" for k, v in f["fastai"].items())
    lin = f["linear"]
    lines = [
        f"**MNIST-1D, {name}** (range test: {f['steps']} steps x {len(f['stops'])} runs, "
        f"stopped: {', '.join(f['stops'])}; read from `{f['signal']}`):",
        _bounds_text(f) + ".",
        f"fastai's readings of the same runs (smoothed training loss, median of "
        f"{len(f['stops'])}): {fastai}.",
        f"Linear sweep 0.001..1 instead (range test only, stopped: {', '.join(lin['stops'])}): "
        + _bounds_text(lin)
        + ".",
        f"Target (best fixed rate's mean final test accuracy minus one point): {f['target']} %.",
        "",
        f"| schedule | epochs | final test acc | test acc at epoch {f['clr_epochs']} "
        "| test acc at best val loss | epochs to target (per seed) |",
        "|---|---|---|---|---|---|",
    ]
    for row in f["table"]:
        label = f"**{row['schedule']}**" if row["bold"] else row["schedule"]
        label += row["note"]
        final = f"**{row['final']}**" if row["bold"] else row["final"]
        reach = ", ".join("-" if e is None else str(e) for e in row["epochs_to_target"])
        lines.append(
            f"| {label} | {row['epochs']} | {final} | {row['at_clr_epochs']} "
            f"| {row['best_val_pick']} | {reach} |"
        )
    return lines


def figures_markdown(figures: dict) -> str:
    lines = []
    for f in figures["models"]:
        lines += [*_model_markdown(f), ""]
    seeds = ", ".join(str(s) for s in figures["seeds"])
    lines.append(f"(accuracies in %, mean ± sd over seeds {seeds})")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["cnn", "mlp"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--grid", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    ap.add_argument("--fixed-epochs", type=int, default=40)
    ap.add_argument(
        "--step-epochs", type=int, default=4, help="half cycle of triangular2, in epochs"
    )
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("lrlab-out") / "range_test_mnist1d")
    args = ap.parse_args()

    from lrlab.atomic import atomic_write_text
    from lrlab.lab.tasks import load_task

    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    task = load_task("mnist1d")
    t0 = time.perf_counter()
    figures: dict = {"seeds": list(range(args.seeds)), "models": []}
    everything: dict = {"optimizer": OPTIMIZER, "batch_size": BATCH, "models": {}}
    for model_name in args.models:
        f, e = study(model_name, task, args)
        figures["models"].append(f)
        everything["models"][model_name] = e
    text = figures_markdown(figures)
    atomic_write_text(args.out / "figures.md", text + "\n")
    atomic_write_text(args.out / "figures.json", json.dumps(figures, indent=2) + "\n")
    atomic_write_text(
        args.out / "results.json", json.dumps(finite(everything), indent=2, default=str) + "\n"
    )
    print(text)
    log(f"done in {time.perf_counter() - t0:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
