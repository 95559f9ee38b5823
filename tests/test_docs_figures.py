"""The figures the docs quote are what the code produces now (scripts/docs_figures.py).

Two checks per figure:

* its text between the ``docs-figure`` markers still has the checksum the script wrote with it:
  a hand edit fails here at once, without running anything;
* regenerated from a fresh run (``default-study``: the default study, ~100 s on 2 cores;
  ``range-test-mnist1d``: about a minute of CPU time), it equals the text in the doc: a change
  of the code that changes a figure fails here until ``python scripts/docs_figures.py`` is run
  and the result committed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "docs_figures", ROOT / "scripts" / "docs_figures.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_figures"] = module
    spec.loader.exec_module(module)
    return module


figures = _load_script()
NAMES = [f.name for f in figures.FIGURES]


def _doc_text(figure) -> str:
    return (ROOT / figure.doc).read_text(encoding="utf-8")


@pytest.mark.parametrize("figure", figures.FIGURES, ids=NAMES)
def test_figure_is_unedited_since_it_was_generated(figure):
    recorded, body = figures.read_figure(_doc_text(figure), figure.name)
    assert figures.checksum(body) == recorded, (
        f"{figure.doc}: figure {figure.name!r} was edited by hand: regenerate it with "
        "python scripts/docs_figures.py"
    )


@pytest.mark.parametrize("figure", figures.FIGURES, ids=NAMES)
def test_figure_is_what_the_code_produces_now(figure):
    args = argparse.Namespace(workers=2, db=None)
    _, body = figures.read_figure(_doc_text(figure), figure.name)
    now = figure.generate(args)
    assert now == body, (
        f"{figure.doc}: figure {figure.name!r} is stale; run python scripts/docs_figures.py.\n"
        f"now:\n{now}\nin the doc:\n{body}"
    )


# the mechanism itself, on a small document and a generator that needs no training

DOC = """# A doc

Some text.

<!-- docs-figure: demo sha256=0 -->
| a | b |
|---|---|
| 1 | 2 |
<!-- /docs-figure: demo -->

More text.
"""


def test_an_edited_figure_fails_the_checksum():
    text = figures.replace_figure(DOC, "demo", "| a | b |\n|---|---|\n| 1 | 2 |\n")
    recorded, body = figures.read_figure(text, "demo")
    assert figures.checksum(body) == recorded
    edited = text.replace("| 1 | 2 |", "| 1 | 3 |")
    recorded, body = figures.read_figure(edited, "demo")
    assert figures.checksum(body) != recorded


def test_regenerating_rewrites_only_between_the_markers(tmp_path, monkeypatch):
    doc = tmp_path / "doc.md"
    doc.write_text(figures.replace_figure(DOC, "demo", "old\n"))
    monkeypatch.setattr(figures, "ROOT", tmp_path)
    demo = figures.Figure("demo", "doc.md", lambda args: "| x |\n|---|\n| 42 |\n")
    args = argparse.Namespace()
    assert figures.stale_figures([demo], args, write=False) != []  # --check: stale, untouched
    assert "old" in doc.read_text()
    diffs = figures.stale_figures([demo], args, write=True)
    assert len(diffs) == 1 and "+| 42 |" in diffs[0]
    text = doc.read_text()
    assert text.startswith("# A doc\n\nSome text.\n\n") and text.endswith("\nMore text.\n")
    assert figures.read_figure(text, "demo")[1] == "| x |\n|---|\n| 42 |\n"
    assert figures.stale_figures([demo], args, write=False) == []  # idempotent


def test_a_missing_marker_is_an_error():
    with pytest.raises(LookupError, match="no docs-figure markers for 'other'"):
        figures.read_figure(DOC, "other")


REPORT = """# lrlab compare: `default`

## Results

| schedule | n | final % | wall s | verdict |
|---|---:|---:|---:|---|
| multistep | 5 | 94.06 ± 0.76 | 7.1 ± 0.2 | baseline |

Accuracies are...
"""


def test_the_table_is_read_from_the_report_without_timings():
    table = figures.drop_columns(figures.markdown_table(REPORT), figures.TIMING_COLUMNS)
    assert table == [
        "| schedule | n | final % | verdict |",
        "|---|---:|---:|---|",
        "| multistep | 5 | 94.06 ± 0.76 | baseline |",
    ]
