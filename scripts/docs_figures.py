"""Regenerate the figures the docs quote from what the code produces now, or check them.

A generated figure sits between two markers in a markdown file:

    <!-- docs-figure: NAME sha256=0123456789abcdef -->
    ...generated text...
    <!-- /docs-figure: NAME -->

``sha256`` is the start of the SHA-256 of the text between the markers, written with it: a hand
edit of a figure no longer matches its checksum (``tests/test_docs_figures.py`` checks that
without running anything), and ``--check`` regenerates every figure and compares.

Figures covered (``FIGURES``):

* ``default-study`` in README.md: the results table of the default study's report
  (``lrlab compare`` with no study, written to ``OUT/report.md``), without its timing columns
  (wall time depends on the machine; the README quotes a measured time outside the markers);
* ``range-test-least-squares`` and ``range-test-mnist1d`` in docs/range-test.md: what
  ``experiments/range_test_least_squares.py`` and ``experiments/range_test_mnist1d.py`` print
  (seconds, and about a minute of CPU time).

Usage (from the repository root, with the venv's python):

    python scripts/docs_figures.py                 # run the default study, rewrite the figures
    python scripts/docs_figures.py --check         # exit 1 (and show the difference) if stale
    python scripts/docs_figures.py --only range-test-least-squares   # one figure
    python scripts/docs_figures.py --db runs/x.sqlite   # reuse a database: the run trains only
                                                        # what it does not hold yet
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: columns of the report's table left out of the README: they measure the machine, not the code
TIMING_COLUMNS = ("wall",)


@dataclasses.dataclass(frozen=True)
class Figure:
    name: str
    doc: str  # relative to the repository root
    generate: Callable[[argparse.Namespace], str]


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _pattern(name: str) -> re.Pattern:
    return re.compile(
        rf"<!-- docs-figure: {re.escape(name)} sha256=(?P<sum>[0-9a-f]+) -->\n"
        rf"(?P<body>.*?)"
        rf"<!-- /docs-figure: {re.escape(name)} -->",
        re.S,
    )


def read_figure(text: str, name: str) -> tuple[str, str]:
    """``(recorded checksum, body)`` of figure ``name`` in a document's text."""
    match = _pattern(name).search(text)
    if match is None:
        raise LookupError(f"no docs-figure markers for {name!r}")
    return match["sum"], match["body"]


def replace_figure(text: str, name: str, body: str) -> str:
    """The document with figure ``name`` replaced by ``body`` and its checksum updated."""
    read_figure(text, name)  # the markers must exist
    body = body if body.endswith("\n") else body + "\n"
    block = (
        f"<!-- docs-figure: {name} sha256={checksum(body)} -->\n{body}<!-- /docs-figure: {name} -->"
    )
    return _pattern(name).sub(lambda _: block, text, count=1)


def markdown_table(report: str, section: str = "## Results") -> list[str]:
    """The lines of the first table after ``section`` in a markdown report."""
    lines = report.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(section)), 0)
    table: list[str] = []
    for line in lines[start:]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    if not table:
        raise LookupError(f"no table after {section!r} in the report")
    return table


def drop_columns(table: list[str], words: tuple[str, ...]) -> list[str]:
    """The table without the columns whose header contains one of ``words``."""
    rows = [line.strip().strip("|").split("|") for line in table]
    keep = [i for i, cell in enumerate(rows[0]) if not any(w in cell.lower() for w in words)]
    return ["|" + "|".join(row[i] for i in keep) + "|" for row in rows]


def default_study_table(args: argparse.Namespace) -> str:
    """Run ``lrlab compare`` (the default study) and return its report's table, timings left out."""
    with tempfile.TemporaryDirectory(prefix="lrlab-docs-figures-") as tmp:
        out = Path(tmp) / "default"
        command = [sys.executable, "-m", "lrlab", "compare", "default", "--out", str(out)]
        command += ["--no-progress", "--workers", str(args.workers)]
        if args.db:
            command += ["--db", str(args.db)]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr}")
        report = (out / "report.md").read_text(encoding="utf-8")
    return "\n".join(drop_columns(markdown_table(report), TIMING_COLUMNS)) + "\n"


def experiment_output(script: str) -> Callable[[argparse.Namespace], str]:
    """A generator that runs ``experiments/SCRIPT`` (in a scratch folder) and returns its stdout,
    which is exactly its figure's block."""

    def generate(args: argparse.Namespace) -> str:
        with tempfile.TemporaryDirectory(prefix="lrlab-docs-figures-") as tmp:
            command = [sys.executable, str(ROOT / "experiments" / script)]
            proc = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc.stdout

    return generate


FIGURES = (
    Figure("default-study", "README.md", default_study_table),
    Figure(
        "range-test-least-squares",
        "docs/range-test.md",
        experiment_output("range_test_least_squares.py"),
    ),
    Figure("range-test-mnist1d", "docs/range-test.md", experiment_output("range_test_mnist1d.py")),
)


def stale_figures(figures, args: argparse.Namespace, *, write: bool) -> list[str]:
    """Regenerate ``figures``; a unified diff per figure that differs from its document (which
    is rewritten when ``write``)."""
    diffs = []
    for figure in figures:
        path = ROOT / figure.doc
        text = path.read_text(encoding="utf-8")
        _, old = read_figure(text, figure.name)
        new = figure.generate(args)
        new = new if new.endswith("\n") else new + "\n"
        updated = replace_figure(text, figure.name, new)
        if updated != text:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        old.splitlines(True), new.splitlines(True), figure.doc, "now"
                    )
                )
                or f"{figure.doc}: {figure.name}: checksum updated\n"
            )
            if write:
                path.write_text(updated, encoding="utf-8")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--db", type=Path, help="results database to reuse (default: a new one)")
    parser.add_argument("--only", nargs="*", help="figure names (default: all)")
    args = parser.parse_args(argv)
    figures = [f for f in FIGURES if not args.only or f.name in args.only]
    diffs = stale_figures(figures, args, write=not args.check)
    for diff in diffs:
        print(diff)
    if args.check:
        print(f"{len(diffs)} of {len(figures)} figure(s) stale", file=sys.stderr)
        return 1 if diffs else 0
    print(f"{len(diffs)} of {len(figures)} figure(s) rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
