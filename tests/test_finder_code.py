"""The finder's code stays as simple as the schedule core: short functions (issue 14)."""

from __future__ import annotations

import ast
from pathlib import Path

import lrlab

FINDER = Path(lrlab.__file__).parent / "finder"
LIMIT = 60


def _functions(path: Path):
    """(name, first line, length in lines: signature, docstring and body)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_in_the_finder_is_over_60_lines():
    long = [
        f"{path.name}:{line} {name} ({length} lines)"
        for path in sorted(FINDER.glob("*.py"))
        for name, line, length in _functions(path)
        if length > LIMIT
    ]
    assert not long, long


def test_constants_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; from lrlab.finder.constants import SIGNAL_CHOICES; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
