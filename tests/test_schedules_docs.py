"""docs/schedules.md is generated from the schedules (up to date), and every snippet runs."""

from __future__ import annotations

import doctest
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "schedules.md"


def _script():
    spec = importlib.util.spec_from_file_location(
        "make_schedule_docs", ROOT / "scripts" / "make_schedule_docs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_is_up_to_date():
    assert PAGE.read_text() == _script().render_markdown(), "run scripts/make_schedule_docs.py"


def test_every_schedule_type_has_a_section_and_a_picture():
    from lrlab.schedules import schedule_types

    text = PAGE.read_text()
    for name in schedule_types():
        assert f"## `{name}`" in text
        assert (ROOT / "docs" / "img" / f"{name}.png").is_file(), name


@pytest.mark.parametrize("index", range(len(re.findall(r"```python\n", PAGE.read_text()))))
def test_python_snippets_run(index, capsys):
    code = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)[index]
    exec(compile(code, f"docs/schedules.md[{index}]", "exec"), {})
    assert capsys.readouterr().out.startswith("[")


def test_pycon_examples_pass_as_doctests():
    blocks = re.findall(r"```pycon\n(.*?)```", PAGE.read_text(), re.S)
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for i, block in enumerate(blocks):
        runner.run(parser.get_doctest(block, {}, f"schedules.md[{i}]", str(PAGE), 0))
    assert runner.summarize(verbose=False).failed == 0
