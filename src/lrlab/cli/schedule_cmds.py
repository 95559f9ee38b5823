"""``lrlab lr``, ``lrlab plot``, ``lrlab schedules`` and ``lrlab papers``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lrlab.atomic import atomic_save_figure
from lrlab.errors import ConfigError
from lrlab.policies import as_driver
from lrlab.schedules import REGISTRY, from_config, load_config


def register(sub) -> None:
    p = sub.add_parser("lr", help="print the learning rate at steps 0..N-1 of a config")
    p.add_argument("config", help="a .json/.toml file or inline JSON")
    p.add_argument("--steps", type=int, required=True, help="number of steps to print")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    _add_replay_options(p)
    p.set_defaults(func=cmd_lr)

    p = sub.add_parser("plot", help="plot one or more configs' learning rates to a PNG")
    p.add_argument("configs", nargs="+", help=".json/.toml files or inline JSON")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("-o", "--output", required=True, help="PNG path")
    p.add_argument("--labels", nargs="*", help="one legend label per config")
    p.add_argument("--log", action="store_true", help="logarithmic learning-rate axis")
    _add_replay_options(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("schedules", help="list every config type with its parameters and defaults")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_schedules)

    p = sub.add_parser("papers", help="print and plot the schedules of the four papers")
    p.add_argument("-o", "--output", default="lrlab-papers.png", help="PNG path")
    p.set_defaults(func=cmd_papers)


def _add_replay_options(p) -> None:
    p.add_argument(
        "--metrics",
        metavar="FILE",
        help="replay a recorded metric history through a policy: a JSON list, one value "
        "per epoch (e.g. validation losses)",
    )
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        metavar="S",
        help="steps in one epoch of the replayed history (default 1; needs --metrics)",
    )


def _check_steps(steps: int) -> int:
    if steps < 1:
        raise ConfigError(f"--steps must be an integer >= 1, got {steps}")
    return steps


def learning_rates(config_source, steps: int, *, metrics=None, steps_per_epoch: int | None = None):
    """The learning rates of a config at steps 0..steps-1 (a NumPy array).

    With ``metrics`` (a list of per-epoch values, or a path / inline JSON list) a policy is
    replayed through them, ``steps_per_epoch`` steps per epoch; a plain schedule ignores them.
    """
    import numpy as np

    steps = _check_steps(steps)
    if steps_per_epoch is not None and metrics is None:
        raise ConfigError(
            "--steps-per-epoch needs --metrics FILE (the per-epoch history to replay)"
        )
    controller = from_config(load_config(config_source))
    if metrics is None:
        if as_driver(controller).stateful:
            raise ConfigError(
                f"this config is a policy (trigger {controller.trigger.type_name!r}): its learning rate depends "
                "on a metric; give --metrics FILE (a JSON list, one value per epoch) and "
                "--steps-per-epoch S to replay a history"
            )
        return controller.values(steps)
    from lrlab.policies import load_metrics, replay

    if not isinstance(metrics, (list, tuple)):
        metrics = load_metrics(metrics)
    spe = 1 if steps_per_epoch is None else steps_per_epoch
    if spe < 1:
        raise ConfigError(f"--steps-per-epoch must be an integer >= 1, got {spe}")
    return np.asarray(replay(controller, metrics, spe, steps=steps).lrs, dtype=np.float64)


def cmd_lr(args) -> int:
    values = learning_rates(
        args.config, args.steps, metrics=args.metrics, steps_per_epoch=args.steps_per_epoch
    )
    if args.json:
        print(json.dumps([float(v) for v in values]))
    else:
        for step, value in enumerate(values):
            print(f"{step}\t{float(value)!r}")
    return 0


def plot_curves(
    curves: dict[str, object], path, *, title: str = "", log: bool = False, xlabel: str = "step"
) -> Path:
    """Draw named learning-rate curves on one figure and save it as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for label, values in curves.items():
        ax.plot(range(len(values)), values, label=label, lw=1.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("learning rate")
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)
    return Path(path)


def cmd_plot(args) -> int:
    labels = args.labels or []
    if labels and len(labels) != len(args.configs):
        raise ConfigError(f"--labels: got {len(labels)} labels for {len(args.configs)} configs")
    metrics = None
    if args.metrics is not None:
        from lrlab.policies import load_metrics

        metrics = load_metrics(args.metrics)
    curves = {}
    for i, source in enumerate(args.configs):
        schedule = from_config(load_config(source))
        label = labels[i] if labels else schedule.type_name
        if not labels and as_driver(schedule).stateful:
            label = f"policy ({schedule.trigger.type_name})"
        while label in curves:
            label += "'"
        curves[label] = learning_rates(
            schedule.to_config(), args.steps, metrics=metrics, steps_per_epoch=args.steps_per_epoch
        )
    print(plot_curves(curves, args.output, log=args.log))
    return 0


def describe_types() -> list[dict]:
    """Every registered config type: name, one-line summary, parameters with defaults."""
    rows = []
    for name, cls in sorted(REGISTRY.items()):
        params = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = "<required>"
            params.append({"name": f.name, "default": default})
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append(
            {
                "type": name,
                "summary": doc[0] if doc else "",
                "params": params,
                **getattr(cls, "describe_extra", lambda: {})(),
            }
        )
    return rows


def cmd_schedules(args) -> int:
    rows = describe_types()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lrlab config types", show_lines=True)
    table.add_column("type", style="bold")
    table.add_column("parameters (default)")
    table.add_column("what it is")
    for row in rows:
        params = ", ".join(
            p["name"] if p["default"] == "<required>" else f"{p['name']}={p['default']!r}"
            for p in row["params"]
        )
        extra = "".join(
            f"\n{k}: {', '.join(map(str, v))}"
            for k, v in row.items()
            if k not in ("type", "summary", "params")
        )
        table.add_row(row["type"], params, row["summary"] + extra)
    Console().print(table)
    return 0


def paper_schedules(epochs: int = 300) -> dict[str, dict]:
    """One config per paper, per epoch, for the overview plot of ``lrlab papers``."""
    return {
        "RALR (multistep 0.1, p=0.5, u~U[1,3])": {
            "type": "ralr",
            "base": {
                "type": "multistep",
                "lr": 0.1,
                "milestones": [epochs // 2, 3 * epochs // 4],
                "gamma": 0.1,
            },
            "p": 0.5,
            "low": 1.0,
            "high": 3.0,
            "period": 1,
            "seed": 0,
        },
        "CLR triangular2 (0.001..0.006, 20 up)": {
            "type": "cyclic",
            "mode": "triangular2",
            "base_lr": 0.001,
            "max_lr": 0.006,
            "step_size_up": 20,
        },
        "seq4 by epoch (r0=0.01)": {"type": "sequence", "kind": "seq4", "lr": 0.01},
        "k-decay k=3 on cosine (0.1 -> 0.001)": {
            "type": "kdecay",
            "k": 3.0,
            "form": "warp",
            "base": {"type": "cosine", "lr": 0.1, "end_lr": 0.001, "total": epochs},
        },
        "cosine (0.1 -> 0.001)": {"type": "cosine", "lr": 0.1, "end_lr": 0.001, "total": epochs},
    }


def cmd_papers(args) -> int:
    from rich.console import Console
    from rich.table import Table

    epochs = 300
    configs = paper_schedules(epochs)
    curves = {name: from_config(c).values(epochs) for name, c in configs.items()}
    marks = [0, 1, 2, 10, 11, 50, 149, 150, 225, 299]
    table = Table(title="learning rate per epoch")
    table.add_column("schedule")
    for m in marks:
        table.add_column(f"e{m}", justify="right")
    for name, values in curves.items():
        table.add_row(name, *(f"{values[m]:.5g}" for m in marks))
    Console().print(table)
    print(
        plot_curves(
            curves,
            args.output,
            log=True,
            xlabel="epoch",
            title="The four papers' schedules (log scale)",
        )
    )
    return 0
