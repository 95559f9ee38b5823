"""Do the range test's bounds, used in triangular2, match the best fixed learning rate of a grid?

For each model on MNIST-1D:

1. run ``lrlab.range_test`` exactly as ``lrlab find`` does by default (geometric sweep 1e-4..10
   over 4 epochs, batch 128, SGD momentum 0.9 / weight decay 5e-4 as in the lab's trainer,
   3 repeats, validation accuracy every step) and read ``base_lr`` / ``max_lr`` / ``lr``;
2. train a small grid of constant learning rates for ``--fixed-epochs`` epochs;
3. train ``triangular2`` between the suggested bounds for ``--cycles`` cycles of
   ``2 x --step-epochs`` epochs (fewer epochs than the grid), and a constant schedule at the
   suggested single ``lr`` for ``--fixed-epochs``;

every schedule with ``--seeds`` seeds, through the lab's trainer (``lrlab.lab.trainer``). Prints a
markdown table and writes ``results.json``, ``range_test_<model>.json/png`` and
``curves_<model>.png`` under ``--out``.

    .venv/bin/python experiments/range_test_mnist1d.py            # ~1-2 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch


def mean_sd(values):
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def epochs_to_reach(curve, target):
    for i, acc in enumerate(curve):
        if acc >= target:
            return i + 1
    return math.inf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["cnn", "mlp"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--grid", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    ap.add_argument("--fixed-epochs", type=int, default=40)
    ap.add_argument(
        "--step-epochs", type=int, default=4, help="half cycle of triangular2, in epochs"
    )
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="range-test repeats")
    ap.add_argument("--out", type=Path, default=Path("lrlab-out") / "range_test_mnist1d")
    args = ap.parse_args()

    from lrlab.finder import range_test
    from lrlab.lab.models import build_model
    from lrlab.lab.tasks import load_task
    from lrlab.lab.trainer import TrialSpec, make_optimizer, steps_per_epoch, train_trial

    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    task = load_task("mnist1d")
    per_epoch = steps_per_epoch(len(task.y_train), args.batch_size)
    optimizer_cfg = {"type": "sgd", "momentum": 0.9, "weight_decay": 5e-4}
    seeds = list(range(args.seeds))
    clr_epochs = 2 * args.step_epochs * args.cycles
    report = {
        "task": "mnist1d",
        "batch_size": args.batch_size,
        "optimizer": optimizer_cfg,
        "seeds": seeds,
        "fixed_epochs": args.fixed_epochs,
        "clr_epochs": clr_epochs,
        "models": {},
    }
    lines = []

    def run(model, schedule, epochs):
        curves, finals, picked = [], [], []
        for seed in seeds:
            res = train_trial(
                TrialSpec(
                    task="mnist1d",
                    model=model,
                    schedule=schedule,
                    epochs=epochs,
                    batch_size=args.batch_size,
                    seed=seed,
                    optimizer=optimizer_cfg,
                ),
                task=task,
                threads=1,
            )
            curves.append([e.test_acc for e in res.epochs])
            finals.append(res.final_test_acc)
            picked.append(res.best_test_acc)
        return {
            "schedule": schedule,
            "epochs": epochs,
            "curves": curves,
            "final": finals,
            "best_val_pick": picked,
        }

    for model_name in args.models:
        t0 = time.perf_counter()
        # 1. the range test, as `lrlab find` runs it by default
        torch.manual_seed(0)
        model = build_model(model_name, task)
        opt = make_optimizer(model.parameters(), optimizer_cfg)
        rt = range_test(
            model,
            opt,
            torch.nn.CrossEntropyLoss(),
            (task.x_train, task.y_train),
            val_data=(task.x_val, task.y_val),
            start_lr=1e-4,
            end_lr=10.0,
            steps=max(100, 4 * per_epoch),
            mode="exp",
            batch_size=args.batch_size,
            repeats=args.repeats,
            val_every=1,
            seed=0,
        )
        sug = rt.suggest()
        rt.to_json(args.out / f"range_test_{model_name}.json", suggestion=sug)
        rt.plot(args.out / f"range_test_{model_name}.png", suggestion=sug)
        rt_seconds = time.perf_counter() - t0
        print(f"[{model_name}] range test ({rt_seconds:.0f} s): {sug}", flush=True)
        if not sug.ok:
            raise SystemExit(f"no usable suggestion for {model_name}: {sug.codes}")

        # 2. the fixed grid; 3. triangular2 in the suggested bounds, and the suggested single lr
        rows = {}
        for lr in args.grid:
            rows[f"constant {lr:g}"] = run(
                model_name, {"type": "constant", "lr": lr}, args.fixed_epochs
            )
            print(
                f"[{model_name}] constant {lr:g}: final {mean_sd(rows[f'constant {lr:g}']['final'])}",
                flush=True,
            )
        cyc = sug.to_cyclic_config(step_size_up=args.step_epochs * per_epoch)
        rows["triangular2 (suggested bounds)"] = run(model_name, cyc, clr_epochs)
        rows["constant (suggested lr)"] = run(
            model_name, {"type": "constant", "lr": sug.lr}, args.fixed_epochs
        )

        grid_keys = [f"constant {lr:g}" for lr in args.grid]
        best_key = max(grid_keys, key=lambda k: np.mean(rows[k]["final"]))
        best_final = float(np.mean(rows[best_key]["final"]))
        target = best_final - 0.01
        for row in rows.values():
            row["epochs_to_target"] = [epochs_to_reach(c, target) for c in row["curves"]]
        report["models"][model_name] = {
            "suggestion": sug.to_dict(),
            "range_test_seconds": rt_seconds,
            "range_test_steps": len(rt),
            "range_test_stop": [r.stop_reason for r in rt.runs],
            "cyclic_config": cyc,
            "best_fixed": best_key,
            "target": target,
            "rows": {k: {kk: vv for kk, vv in v.items()} for k, v in rows.items()},
        }

        # markdown table
        sp = sug.spread
        lines.append(f"\n### MNIST-1D, model `{model_name}`\n")
        lines.append(
            f"Range test ({len(rt)} steps x {len(rt.runs)} runs, stopped: "
            f"{', '.join(r.stop_reason for r in rt.runs)}; read from `{sug.signal}`): "
            f"base_lr = {sug.base_lr:.3g} (IQR {sp['base_lr'].q25:.3g}-{sp['base_lr'].q75:.3g}), "
            f"max_lr = {sug.max_lr:.3g} (IQR {sp['max_lr'].q25:.3g}-{sp['max_lr'].q75:.3g}), "
            f"lr = {sug.lr:.3g}. Warnings: {', '.join(sug.codes) or 'none'}.\n"
        )
        lines.append(
            f"Target = best fixed rate's mean final test accuracy - 1 point = {100 * target:.1f} %.\n"
        )
        lines.append(
            f"| schedule | epochs | final test acc (mean ± sd) | test acc at epoch {clr_epochs} | "
            "test acc at best val loss | epochs to target (per seed) |"
        )
        lines.append("|---|---|---|---|---|---|")
        for key, row in rows.items():
            m, s = mean_sd(row["final"])
            pm, ps = mean_sd(row["best_val_pick"])
            reach = ", ".join("-" if math.isinf(e) else str(e) for e in row["epochs_to_target"])
            label = f"**{key}**" if key == best_key else key
            if key.startswith("triangular2"):
                label += f" [{sug.base_lr:.3g}, {sug.max_lr:.3g}], step {args.step_epochs} ep"
            if key.startswith("constant (suggested"):
                label += f" = {sug.lr:.3g}"
            am, asd = mean_sd([c[min(clr_epochs, len(c)) - 1] for c in row["curves"]])
            lines.append(
                f"| {label} | {row['epochs']} | {100 * m:.1f} ± {100 * s:.1f} | "
                f"{100 * am:.1f} ± {100 * asd:.1f} | {100 * pm:.1f} ± {100 * ps:.1f} | {reach} |"
            )

        # curves plot
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4), constrained_layout=True)
        ax = fig.add_subplot(1, 1, 1)
        for key, row in rows.items():
            c = np.asarray(row["curves"]).mean(axis=0)
            ax.plot(
                np.arange(1, len(c) + 1),
                100 * c,
                lw=2 if key in (best_key,) or "triangular" in key else 1,
                label=key,
            )
        ax.axhline(100 * target, color="gray", ls=":", lw=1, label="target")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%, mean of seeds)")
        ax.set_title(f"MNIST-1D {model_name}: triangular2 in the range-test bounds vs a fixed grid")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.savefig(args.out / f"curves_{model_name}.png", dpi=110)

    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    (args.out / "results.json").write_text(json.dumps(clean(report), indent=2))
    text = "\n".join(lines)
    (args.out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
