"""``lrlab compare``: train real models under each schedule of a study, then report who wins.

With no argument it runs the built-in ``default`` study. Results go to an SQLite file; running
the same command again skips every trial already finished (also after a crash or a kill).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lrlab.cli.args import check_device, int_at_least, positive_float
from lrlab.errors import ConfigError


def register(subparsers) -> None:
    import lrlab.lab.ray_executor  # noqa: F401  (registers "ray"; Ray is imported when it runs)
    from lrlab.lab.sweep import EXECUTORS

    p = subparsers.add_parser(
        "compare",
        help="compare schedules by training real models (many seeds, in parallel, resumable)",
        description=(
            "Run a study: train every schedule of it with every seed, in parallel worker "
            "processes, store the results in SQLite (a rerun skips finished trials), and write a "
            "markdown report with statistics and plots. Without STUDY, runs the default study."
        ),
    )
    p.add_argument(
        "study",
        nargs="?",
        default="default",
        metavar="STUDY_OR_PATH",
        help="a built-in study name (see --list) or the path of a .toml study file "
        "(default: %(default)s)",
    )
    p.add_argument("--list", action="store_true", help="list the built-in studies and exit")
    _execution_options(p, EXECUTORS)
    _output_options(p)
    _study_options(p)
    _sequential_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _execution_options(p, EXECUTORS) -> None:
    """Where and how trials run."""
    p.add_argument(
        "--workers",
        type=int_at_least(0),
        default=None,
        metavar="N",
        help="worker processes (default: one per CPU core); 0 runs trials in this process",
    )
    p.add_argument(
        "--threads",
        type=int_at_least(1),
        default=1,
        metavar="N",
        help="torch threads per worker (default: 1)",
    )
    p.add_argument(
        "--executor",
        default="local",
        choices=sorted(EXECUTORS),
        help="where trials run (default: local process pool)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --executor ray: an existing cluster ('auto', 'ray://host:10001'); "
        "default: a local Ray instance",
    )


def _output_options(p) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of the report and plots (default: lrlab-out/STUDY)",
    )
    p.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="results database (default: OUT/results.sqlite)",
    )


def _study_options(p) -> None:
    """Overrides of the study and of how each trial runs."""
    p.add_argument(
        "--seeds",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="override the study's seeds with 0..N-1",
    )
    p.add_argument(
        "--epochs",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="override the study's epochs (placeholders scale the horizons)",
    )
    p.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="cpu, cuda, cuda:1, ... (default: CUDA when available, else CPU)",
    )
    p.add_argument(
        "--time-limit",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="end a trial that runs longer and record it failed (default: the study's time_limit)",
    )
    p.add_argument(
        "--batch-trials",
        type=int_at_least(1),
        default=None,
        metavar="K",
        help="train up to K compatible trials as one computation (default: chosen from memory "
        "and cores for lrlab's MNIST-1D models; 1 = one by one)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a [settings] value of the study (VALUE in TOML syntax), repeatable",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="do not train: rebuild the report from what the database holds",
    )


def _sequential_options(p) -> None:
    """Seeds until decided, and a preview that trains nothing."""
    p.add_argument(
        "--until-decided",
        action="store_true",
        help="add seeds where a comparison with the baseline is still undecided, until every "
        "one is decided (an anytime-valid test, see docs/statistics.md) or a limit is reached",
    )
    p.add_argument(
        "--max-seeds",
        type=int_at_least(2),
        default=30,
        metavar="N",
        help="with --until-decided: at most N seeds per schedule (default: %(default)s)",
    )
    p.add_argument(
        "--budget",
        type=positive_float,
        default=None,
        metavar="MINUTES",
        help="with --until-decided: start no round that would end after MINUTES",
    )
    p.add_argument(
        "--preview",
        action="store_true",
        help="plot every schedule of the study (placeholders resolved) and exit; trains nothing",
    )
    p.add_argument(
        "-o",
        "--preview-out",
        type=Path,
        default=None,
        metavar="PATH",
        help="with --preview: the figure (.png, .pdf, .svg; default: OUT/preview.png)",
    )


def _list_studies() -> int:
    from rich.console import Console
    from rich.table import Table

    from lrlab.lab.study import builtin_studies

    table = Table(title="built-in studies (lrlab compare NAME)", show_lines=False)
    table.add_column("study", no_wrap=True)
    table.add_column("description")
    for name, description in builtin_studies().items():
        table.add_row(name, description)
    Console().print(table)
    return 0


def check_output(out: Path, db: Path) -> None:
    """The output folder and the database path are usable, before any work."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if db.exists() and db.is_dir():
        raise ConfigError(f"--db {db} is a folder, not a database file")
    for folder in (out, db.parent):
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(
                f"cannot write into {existing} (read-only); choose another --out/--db"
            )


def parse_settings(items: list[str]) -> dict:
    """``--set NAME=VALUE`` pairs, each VALUE read as a TOML value."""
    from lrlab.lab.study import tomllib

    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set must be NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            out[name.strip()] = text  # a bare word: a string
    return out


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list_studies()
    from lrlab.lab.study import load_study

    check_device(args.device)
    study = load_study(
        args.study, seeds=args.seeds, epochs=args.epochs, settings=parse_settings(args.set)
    )
    out = args.out if args.out is not None else Path("lrlab-out") / study.name
    db = args.db if args.db is not None else out / "results.sqlite"
    check_output(out, db)
    if args.preview:
        return _preview(study, args.preview_out or out / "preview.png")
    if args.report_only and not db.is_file():
        raise ConfigError(f"--report-only: {db} holds no results of study {study.name!r}")
    report, paths, decision = _run_and_report(args, study, out, db)
    return _print_report(report, paths, db, decision)


def _run_and_report(args: argparse.Namespace, study, out: Path, db: Path):
    from rich.console import Console

    from lrlab.lab.report import build_report, write_report
    from lrlab.lab.store import Store

    decision = None
    with Store(db) as store:
        if args.report_only:
            if study.name not in store.study_names():
                raise ConfigError(f"--report-only: {db} holds no results of study {study.name!r}")
        elif args.until_decided:
            decision = _until_decided(args, study, store, db, Console(stderr=True))
        else:
            _sweep(args, study, store, db, Console(stderr=True))
        report = build_report(store, study.name)
        paths = write_report(report, out, decision)
    return report, paths, decision


def _preview(study, path: Path) -> int:
    from lrlab.cli.preview import preview_study

    preview_study(study, path)
    print(f"preview: {path}")
    return 0


def _executor(args: argparse.Namespace):
    from lrlab.lab.sweep import make_executor

    options = {"address": args.ray_address} if args.executor == "ray" else {}
    return make_executor(
        args.executor, workers=args.workers, device=args.device, threads=args.threads, **options
    )


def _sweep_options(args: argparse.Namespace, executor, err_console) -> dict:
    """The keywords of :func:`lrlab.lab.sweep.run_sweep` that the command line sets."""
    return {
        "executor": executor,
        "progress": not args.no_progress,
        "console": err_console,
        "time_limit": args.time_limit,
        "batch_trials": args.batch_trials,
    }


def _until_decided(args: argparse.Namespace, study, store, db: Path, err_console):
    from lrlab.lab.sequential import run_until_decided
    from lrlab.lab.sweep import cell_trainer

    err_console.print(
        f"study [bold]{study.name}[/]: {len(study.schedules)} schedules, seeds added until "
        f"decided (at most {args.max_seeds} each"
        + (f", budget {args.budget:g} min)" if args.budget else ")")
    )
    err_console.print(f"results: {db}", highlight=False)
    executor = _executor(args)
    try:
        train_cells = cell_trainer(study, store, **_sweep_options(args, executor, err_console))
        budget_s = None if args.budget is None else 60.0 * args.budget
        return run_until_decided(
            study.to_dict(), store, train_cells, max_seeds=args.max_seeds, budget_s=budget_s
        )
    finally:
        executor.close()


def _sweep(args: argparse.Namespace, study, store, db: Path, err_console) -> None:
    from lrlab.lab.sweep import run_sweep

    what = f"{study.task}, {study.model}" if study.trial is None else f"trial {study.trial}"
    err_console.print(
        f"study [bold]{study.name}[/]: {len(study.schedules)} schedules x "
        f"{len(study.seeds)} seeds = {len(study.cells)} trials of {study.epochs} epochs ({what})"
    )
    err_console.print(f"results: {db}", highlight=False)
    executor = _executor(args)
    try:
        summary = run_sweep(study, store, **_sweep_options(args, executor, err_console))
    finally:
        executor.close()
    others = f", {summary.by_others} by another run" if summary.by_others else ""
    err_console.print(
        f"{summary.ran} trials run ({summary.done} done, {summary.diverged} diverged, "
        f"{summary.failed} failed), {summary.skipped} already in the database{others}, "
        f"{summary.seconds:.1f} s"
    )


def _pipe_width() -> int:
    """The width of a table written to a pipe or a file: ``$COLUMNS`` when set, else a wide 180
    (rich's 80-column default would stack columns nobody asked to narrow)."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) >= 40 else 180


def _print_report(report, paths: dict, db: Path, decision=None) -> int:
    from rich.console import Console

    from lrlab.lab.report import rich_decision_table, rich_table

    # a pipe or a file gets a wide table rather than rich's 80-column default
    out_console = Console() if sys.stdout.isatty() else Console(width=_pipe_width())
    out_console.print(rich_table(report))
    if decision is not None:
        out_console.print(rich_decision_table(decision))
    out_console.print(f"report: {paths['report']}")
    plots = [str(p) for k, p in paths.items() if k != "report"]
    out_console.print(f"plots:  {', '.join(plots)}")
    out_console.print(f"db:     {db}")
    failed = sum(s.failed for s in report.stats)
    if failed:
        print(
            f"lrlab compare: {failed} trial(s) failed; see the report; rerun to retry them",
            file=sys.stderr,
        )
        return 1
    return 0
