"""``lrlab find``: the LR range test on one of the lab's tasks and models.

Prints the suggested bounds (a table with their spread and the reason each was chosen), writes
the result as JSON (``range_test.json``) and a plot (``range_test.png``), and prints a cyclic
config that ``lrlab`` schedules and studies accept as is (``--config-out`` writes it to a file).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from lrlab.atomic import atomic_write_text
from lrlab.cli.args import check_device, int_at_least, positive_float
from lrlab.errors import ConfigError
from lrlab.lab.contract import DEFAULT_OPTIMIZER

SIGNALS = ("auto", "val_acc", "train_acc", "val_loss", "loss")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "find",
        help="LR range test: suggest base_lr / max_lr for a cyclical schedule (and one fixed lr)",
        description=(
            "Run Smith's LR range test (CLR, section 3.3) on a built-in task and model: one short "
            "run with a rising learning rate, read base_lr where accuracy starts to rise and "
            "max_lr where the rise slows, turns ragged or falls. Repeats over seeds give each bound a "
            "spread. Writes JSON and a plot; prints a cyclic config ready for a study."
        ),
    )
    p.add_argument(
        "--task",
        default="mnist1d",
        help="built-in task, or 'module:function' returning a lrlab.lab.Task, imported from "
        "sys.path and the current folder (default: %(default)s)",
    )
    p.add_argument(
        "--model",
        default="mlp",
        help="built-in model, or 'module:attribute' called with the task, returning an "
        "nn.Module (default: %(default)s)",
    )
    p.add_argument(
        "--optimizer",
        default=json.dumps(DEFAULT_OPTIMIZER),
        metavar="JSON",
        help="optimizer config as in a study (default: %(default)s)",
    )
    _ladder_options(p)
    _run_options(p)
    _reading_options(p)
    _output_options(p)
    p.set_defaults(func=run)


def _ladder_options(p) -> None:
    """The ladder of rates and its length."""
    p.add_argument(
        "--mode",
        default="exp",
        choices=("linear", "exp"),
        help="ladder of rates: geometric (exp, default: for an unknown scale) or linear "
        "(Smith's; good for a second, finer pass)",
    )
    p.add_argument(
        "--start-lr", type=positive_float, default=1e-4, metavar="LR", help="default: %(default)s"
    )
    p.add_argument(
        "--end-lr", type=positive_float, default=10.0, metavar="LR", help="default: %(default)s"
    )
    p.add_argument(
        "--steps",
        type=int_at_least(10),
        default=None,
        metavar="N",
        help="optimizer steps (default: --epochs epochs, at least 100)",
    )
    p.add_argument(
        "--epochs",
        type=positive_float,
        default=4.0,
        metavar="E",
        help="length of the test in epochs when --steps is not given (default: %(default)s)",
    )


def _run_options(p) -> None:
    """Batches, seeds, repeats and validation of each run."""
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=128, metavar="N", help="default: %(default)s"
    )
    p.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        metavar="N",
        help="model init, data order (default: %(default)s)",
    )
    p.add_argument(
        "--repeats",
        type=int_at_least(1),
        default=3,
        metavar="N",
        help="runs over seeds SEED.. for the spread of each bound (default: %(default)s); "
        "1 reads the spread from a bootstrap of the curve",
    )
    p.add_argument(
        "--val-every",
        type=int_at_least(1),
        default=1,
        metavar="K",
        help="evaluate the validation subset every K steps (default: %(default)s)",
    )
    p.add_argument(
        "--val-samples",
        type=int_at_least(1),
        default=1024,
        metavar="N",
        help="validation samples per evaluation (default: %(default)s)",
    )


def _reading_options(p) -> None:
    """How the bounds are read from the curve, and the cyclic config printed."""
    p.add_argument(
        "--signal",
        default="auto",
        choices=SIGNALS,
        help="curve the bounds are read from (default: validation accuracy)",
    )
    p.add_argument(
        "--diverge-factor",
        type=positive_float,
        default=4.0,
        metavar="F",
        help="stop when the smoothed loss exceeds F x its best (default: %(default)s)",
    )
    p.add_argument(
        "--step-size-up",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="half-cycle of the printed cyclic config in iterations "
        "(default: --step-size-epochs x iterations per epoch)",
    )
    p.add_argument(
        "--step-size-epochs",
        type=positive_float,
        default=4.0,
        metavar="E",
        help="half-cycle in epochs (Smith: 2-10; default: %(default)s)",
    )
    p.add_argument(
        "--cycle-mode",
        default="triangular2",
        choices=("triangular", "triangular2", "exp_range"),
        help="mode of the printed cyclic config (default: %(default)s)",
    )


def _output_options(p) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=Path("lrlab-out") / "find",
        metavar="DIR",
        help="folder for range_test.json and range_test.png (default: %(default)s)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="JSON path (default: OUT/range_test.json)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PATH",
        help="plot path (default: OUT/range_test.png)",
    )
    p.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    p.add_argument(
        "--config-out",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the cyclic config (JSON) to PATH",
    )
    p.add_argument("--data-dir", default=None, metavar="DIR", help="folder of file-based datasets")
    p.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="cpu, cuda, ... (default: CUDA if available)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_optimizer(text: str) -> dict:
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f'--optimizer must be a JSON object, e.g. \'{{"type": "sgd"}}\' ({exc.msg})'
        ) from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"--optimizer must be a JSON object with a 'type' key, got {text!r}")
    return cfg


def _load_inputs(args: argparse.Namespace):
    """``(task, optimizer config, device, code folder)``, everything cheap validated first."""
    from lrlab.lab.contract import is_code_ref
    from lrlab.lab.models import check_model
    from lrlab.lab.tasks import load_any_task, task_info
    from lrlab.lab.trainer import normalize_optimizer, resolve_device

    code_dir = os.getcwd()  # user code: like `python -m`, the current folder is searched
    if not is_code_ref(args.task):
        info = task_info(args.task)
        if not is_code_ref(args.model):
            check_model(args.model, info)
    opt_cfg = normalize_optimizer(_parse_optimizer(args.optimizer))
    if not args.start_lr < args.end_lr:
        raise ConfigError(f"--start-lr must be < --end-lr, got {args.start_lr} >= {args.end_lr}")
    check_device(args.device)
    device = resolve_device(args.device)
    task = load_any_task(args.task, data_dir=args.data_dir, code_dir=code_dir, device=device)
    if is_code_ref(args.task) and not is_code_ref(args.model):
        check_model(args.model, task)
    return task, opt_cfg, device, code_dir


def _range_test(args: argparse.Namespace, inputs, steps: int, per_epoch: int, progress: bool):
    import torch

    from lrlab.finder import range_test
    from lrlab.lab.models import build_any_model
    from lrlab.lab.trainer import make_optimizer

    task, opt_cfg, device, code_dir = inputs
    torch.manual_seed(args.seed)
    model = build_any_model(args.model, task, code_dir=code_dir).to(device)
    result = range_test(
        model,
        make_optimizer(model.parameters(), opt_cfg),
        torch.nn.CrossEntropyLoss(),
        (task.x_train, task.y_train),
        val_data=(task.x_val, task.y_val),
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        steps=steps,
        mode=args.mode,
        batch_size=args.batch_size,
        seed=args.seed,
        repeats=args.repeats,
        val_every=args.val_every,
        val_samples=args.val_samples,
        diverge_factor=args.diverge_factor,
        device=device,
        progress=progress,
    )
    lab = {"task": args.task, "model": args.model, "optimizer": opt_cfg}
    for run_result in result.runs:
        run_result.config["lab"] = {**lab, "steps_per_epoch": per_epoch}
    return result


def _bounds_table(sug, title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("bound", no_wrap=True)
    table.add_column("lr", justify="right")
    table.add_column("IQR", justify="right")
    table.add_column("spread (x)", justify="right")
    table.add_column("why")
    for key in ("base_lr", "max_lr", "lr"):
        v = getattr(sug, key)
        s = sug.spread.get(key)
        iqr = f"{s.q25:.3g} .. {s.q75:.3g}" if s is not None and s.n > 1 else "-"
        fac = f"{10**s.log10_iqr:.2f} ({s.method}, n={s.n})" if s is not None and s.n > 1 else "-"
        table.add_row(key, "n/a" if v is None else f"{v:.4g}", iqr, fac, sug.reasons.get(key, ""))
    return table


def _write_files(args: argparse.Namespace, result, sug, title: str, console) -> None:
    json_path = args.json or args.out / "range_test.json"
    result.to_json(json_path, suggestion=sug)
    console.print(f"wrote {json_path}")
    if args.no_plot:
        return
    plot_path = args.plot or args.out / "range_test.png"
    base = "None" if sug.base_lr is None else f"{sug.base_lr:.3g}"
    top = "None" if sug.max_lr is None else f"{sug.max_lr:.3g}"
    result.plot(
        plot_path,
        suggestion=sug if sug.ok else None,
        title=f"{title}\nbase_lr={base}, max_lr={top}",
    )
    console.print(f"wrote {plot_path}")


def _print_config(args: argparse.Namespace, sug, per_epoch: int, console) -> None:
    step_size_up = args.step_size_up or max(1, int(round(args.step_size_epochs * per_epoch)))
    cfg = sug.to_cyclic_config(step_size_up=step_size_up, mode=args.cycle_mode)
    if args.config_out is not None:
        atomic_write_text(args.config_out, json.dumps(cfg, indent=2) + "\n")
        console.print(f"wrote {args.config_out}")
    console.print(
        f"cyclic config (step_size_up = {step_size_up} iterations = "
        f"{step_size_up / per_epoch:.3g} epochs of batch {args.batch_size}):"
    )
    console.print(json.dumps(cfg), markup=False, highlight=False, soft_wrap=True)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lrlab.lab.trainer import iterations_per_epoch

    console, err = Console(), Console(stderr=True)
    inputs = _load_inputs(args)
    per_epoch = iterations_per_epoch(len(inputs[0].y_train), args.batch_size)
    steps = args.steps if args.steps is not None else max(100, int(round(args.epochs * per_epoch)))
    progress = not args.no_progress and console.is_terminal
    result = _range_test(args, inputs, steps, per_epoch, progress)
    sug = result.suggest(signal=args.signal)
    title = (
        f"LR range test: {args.task} / {args.model}, {args.mode} {args.start_lr:g}..{args.end_lr:g}, "
        f"{steps} steps x {len(result.runs)} run(s), stopped: "
        + ", ".join(sorted({r.stop_reason for r in result.runs}))
    )
    console.print(_bounds_table(sug, title))
    console.print(f"read from: {sug.signal}")
    for d in sug.diagnostics:
        err.print(f"[yellow]warning[/yellow] ({d.code}): {d.message}")
    _write_files(args, result, sug, title, console)
    if not sug.ok:
        raise ConfigError("no usable bounds: " + "; ".join(d.message for d in sug.diagnostics))
    _print_config(args, sug, per_epoch, console)
    return 0
