"""``lrlab compare``: train real models under each schedule of a study, then report who wins.

With no argument it runs the built-in ``default`` study. Results go to an SQLite file; running
the same command again skips every trial already finished (also after a crash or a kill).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lrlab.cli.args import int_at_least
from lrlab.errors import ConfigError


def register(subparsers) -> None:
    from lrlab.lab.sweep import EXECUTORS

    try:  # registers "ray" (Ray itself is imported only when that executor runs)
        import lrlab.lab.ray_executor  # noqa: F401
    except ImportError:  # pragma: no cover
        pass

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
        "--report-only",
        action="store_true",
        help="do not train: rebuild the report from what the database holds",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list_studies()

    from rich.console import Console

    from lrlab.lab.report import build_report, rich_table, write_report
    from lrlab.lab.store import Store
    from lrlab.lab.study import load_study
    from lrlab.lab.sweep import make_executor, run_sweep

    if args.device not in (None, "auto"):
        from lrlab.lab.trainer import resolve_device

        try:
            resolve_device(args.device)
        except RuntimeError as exc:
            raise ConfigError(f"--device: {exc}") from None

    study = load_study(args.study, seeds=args.seeds, epochs=args.epochs)
    out = args.out if args.out is not None else Path("lrlab-out") / study.name
    db = args.db if args.db is not None else out / "results.sqlite"
    # a pipe or a file gets a wide table rather than rich's 80-column default
    out_console = Console() if sys.stdout.isatty() else Console(width=180)
    err_console = Console(stderr=True)

    if args.report_only and not db.is_file():
        raise ConfigError(f"--report-only: {db} holds no results of study {study.name!r}")
    with Store(db) as store:
        if args.report_only:
            if study.name not in store.study_names():
                raise ConfigError(f"--report-only: {db} holds no results of study {study.name!r}")
        else:
            cells = study.cells
            err_console.print(
                f"study [bold]{study.name}[/]: {len(study.schedules)} schedules x "
                f"{len(study.seeds)} seeds = {len(cells)} trials of {study.epochs} epochs "
                f"({study.task}, {study.model})"
            )
            err_console.print(f"results: {db}", highlight=False)
            options = {"address": args.ray_address} if args.executor == "ray" else {}
            executor = make_executor(
                args.executor,
                workers=args.workers,
                device=args.device,
                threads=args.threads,
                **options,
            )
            try:
                summary = run_sweep(
                    study,
                    store,
                    executor=executor,
                    progress=not args.no_progress,
                    console=err_console,
                )
            finally:
                executor.close()
            err_console.print(
                f"{summary.ran} trials run ({summary.done} done, {summary.diverged} diverged, "
                f"{summary.failed} failed), {summary.skipped} already in the database, "
                f"{summary.seconds:.1f} s"
            )
        report = build_report(store, study.name)
        paths = write_report(report, out)

    out_console.print(rich_table(report))
    out_console.print(f"report: {paths['report']}")
    out_console.print("plots:  " + ", ".join(str(p) for p in paths.values() if p.suffix == ".png"))
    out_console.print(f"db:     {db}")
    failed = sum(s.failed for s in report.stats)
    if failed:
        print(
            f"lrlab compare: {failed} trial(s) failed; see the report; rerun to retry them",
            file=sys.stderr,
        )
        return 1
    return 0
