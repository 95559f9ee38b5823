"""Every code block of README.md and docs/*.md runs in the tests.

How a block is checked depends on its language (the word after the opening fence):

``python``
    Executed. The Python blocks of one file run in order in one namespace (a reader reads them
    in order, and later blocks use names defined by earlier ones), in a separate Python process
    started in a fresh temporary folder, with ``__name__ == "__main__"``. A file whose snippets
    are fragments of a training loop gets a prelude (``PRELUDES`` below) that defines the names
    the doc takes for granted (``model``, ``optimizer``, ``train_loader``, ...) with small
    tensors; the snippets themselves run unchanged. The process does not inherit
    ``KERAS_BACKEND``: a Keras snippet must set it as the docs tell the reader to.
``console``
    Each ``$ command`` (with ``\\`` continuations) runs in bash, in the file's temporary folder,
    with the venv's ``bin`` first on ``PATH`` (so ``lrlab`` is the venv's). A command must exit
    with 0, or with 2 when the output the doc shows is an ``error:`` line. Where the doc shows
    output (the lines after the command, up to the next ``$``), it is compared with what the
    command printed (stdout; stderr for an error), after this normalisation: runs of blanks
    become one space, numbers with a decimal point are rounded to 6 significant digits,
    durations (``1.2 s``, ``40 ms``, ``3 min``) become ``<time>``, and a line ``...`` in the doc
    stands for any number of lines.
``bash``, ``sh``
    Each command line (``\\`` continuations joined; ``#`` comments are bash's) runs as above and
    must exit with 0; no output is compared.
``toml``
    Parsed; a study (it has ``task`` and ``schedules``) is loaded with ``lrlab.lab.study``, which
    validates every field and builds every schedule; nothing is trained.
``json``
    Parsed as JSON; a config (an object with a ``type``) is built with ``lrlab.from_config``.
``sql``
    Executed against an empty results database of the current schema (``lrlab.lab.store``).
``pycon``
    An interactive session: its ``>>>`` examples run as a doctest (fresh globals, flags
    ``NORMALIZE_WHITESPACE`` and ``ELLIPSIS``); the output it shows is compared.
``text``, ``markdown``
    Not code (sample output, text proposed for another document), except that ``>>>`` examples
    in them run as doctests (each block with fresh globals, flags ``NORMALIZE_WHITESPACE`` and
    ``ELLIPSIS``).

Any other language, or none, fails: a block says what it is.

Markers, in an HTML comment on the line before a block:

``<!-- docs-test: skip reason="..." -->``
    The block is not run (it needs a GPU, a cluster, or takes minutes); the reason is listed
    (``test_skipped_block`` reports each one as a pytest skip, shown by ``-ra``) and
    ``test_skipped_blocks_are_few_and_explained`` keeps the list short.
``<!-- main-command -->``, ``<!-- test-command -->`` (README)
    The main job (minutes) and the test command (this suite itself; ``.ci/run`` runs it): skipped.
``<!-- docs-test: fresh-prelude -->``
    The prelude runs again right before the block: the snippet starts from a fresh model and
    optimizer, as a reader's would (e.g. a range test after a section that trained the model).
``<!-- snippet: NAME -->``
    Run by the test under ``tests/`` that extracts that snippet by name (often with the real
    framework, e.g. under ``torchrun``); ``test_named_snippet_is_run_by_a_test`` checks that
    such a test exists.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent
#: folders of the repository that the docs' commands use by relative path
LINKED = ("examples", "src", "scripts", "benchmarks", "experiments", "docs")
NOT_CODE = {"text", "markdown"}
SHELL = {"bash", "sh"}
TIMEOUT_S = 900

_DATA = """
import torch

torch.manual_seed(0)
teacher = torch.randn(40, 10)  # labels from a fixed linear map: a task the model can learn
x_train, x_val = torch.randn(512, 40), torch.randn(256, 40)
y_train, y_val = (x_train @ teacher).argmax(1), (x_val @ teacher).argmax(1)
model = torch.nn.Sequential(torch.nn.Linear(40, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
optimizer = opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
train_loader = loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(x_train, y_train), batch_size=256
)
loss_fn = torch.nn.CrossEntropyLoss()
epochs = 2
steps_per_epoch = iterations_per_epoch = len(train_loader)
val_loss = 1.0
"""

#: names a doc's fragments take for granted, defined before its first Python block: a small
#: classifier on a learnable synthetic task (40 features, 10 classes, labels from a fixed linear
#: map), its SGD optimizer, a loader of 2 batches, 2 epochs
PRELUDES = {
    "README.md": _DATA,
    "docs/policies.md": _DATA + "validate = lambda model: 1.0  # a validation loss\n",
    "docs/range-test.md": _DATA,
}


# --------------------------------------------------------------------------------------------
# Reading the docs


@dataclasses.dataclass(frozen=True)
class Block:
    file: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None = None  # the reason, when the block is not run here
    snippet: str | None = None  # NAME of a <!-- snippet: NAME --> marker
    fresh: bool = False  # <!-- docs-test: fresh-prelude -->: the prelude runs again before it

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line} ({self.lang or 'no language'})"


_SKIP = re.compile(r'<!--\s*docs-test:\s*skip\s+reason="([^"]+)"\s*-->')
_SNIPPET = re.compile(r"<!--\s*snippet:\s*([\w.-]+)\s*-->")
_LEAD_COMMANDS = {
    "main-command": "the main command: the default study, which test_docs_figures.py runs",
    "test-command": "the test command: this suite itself; .ci/run runs it",
}


def _markers(comment: str) -> dict[str, str | None]:
    skip = _SKIP.search(comment)
    reason = skip[1] if skip else None
    for marker, why in _LEAD_COMMANDS.items():
        if f"<!-- {marker} -->" in comment:
            reason = why
    snippet = _SNIPPET.search(comment)
    fresh = bool(re.search(r"<!--\s*docs-test:\s*fresh-prelude\s*-->", comment))
    return {"skip": reason, "snippet": snippet[1] if snippet else None, "fresh": fresh}


def read_blocks(path: Path, text: str | None = None) -> list[Block]:
    """The fenced code blocks of a markdown file, with the markers on the line before each."""
    from markdown_it import MarkdownIt

    text = path.read_text(encoding="utf-8") if text is None else text
    rel = path.relative_to(ROOT).as_posix() if path.is_absolute() else str(path)
    blocks, comment_end, comment = [], -1, ""
    for token in MarkdownIt("commonmark").parse(text):
        if token.type == "html_block" and token.map:
            comment_end, comment = token.map[1], token.content
        elif token.type in ("fence", "code_block") and token.map:
            marks = _markers(comment) if comment_end == token.map[0] else {}
            lang = token.info.split()[0].lower() if token.info.strip() else ""
            blocks.append(Block(rel, token.map[0] + 1, lang, token.content, **marks))
    return blocks


ALL_BLOCKS = [block for path in DOCS for block in read_blocks(path)]


# --------------------------------------------------------------------------------------------
# Running blocks

_RUNNER = textwrap.dedent(
    """
    import json, sys, traceback
    blocks = json.load(open(sys.argv[1]))
    namespace = {"__name__": "__main__"}
    results = []
    for block in blocks:
        try:
            exec(compile(block["code"], block["name"], "exec"), namespace)
            results.append(None)
        except BaseException as exc:
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == block["name"]]
            at = f" (line {frames[-1].lineno})" if frames else ""
            results.append(f"{type(exc).__name__}{at}: {str(exc).strip()[:400]}")
        with open(sys.argv[2], "w") as f:
            json.dump(results, f)
    """
)


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    return env


def prepare_folder(folder: Path) -> Path:
    for name in LINKED:
        if (ROOT / name).exists() and not (folder / name).exists():
            (folder / name).symlink_to(ROOT / name)
    return folder


def run_python(blocks: list[Block], folder: Path, prelude: str | None) -> dict[Block, str]:
    """Run the blocks in order in one namespace in a new process; block -> error of the failed."""
    named: list[tuple[str, str | None]] = [(f"<prelude of {blocks[0].file}>", prelude)]
    for b in blocks:
        if b.fresh and prelude:
            named.append((f"<prelude again before {b.file}:{b.line}>", prelude))
        named.append((f"{b.file}:{b.line}", b.code))
    named = [(n, c) for n, c in named if c]
    source, results = folder / ".docs-blocks.json", folder / ".docs-results.json"
    source.write_text(json.dumps([{"name": n, "code": c} for n, c in named]))
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(source), str(results)],
        cwd=folder,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    errors = json.loads(results.read_text()) if results.exists() else []
    preludes = [i for i, (n, _) in enumerate(named) if n.startswith("<prelude")]
    for i in preludes:
        assert i >= len(errors) or errors[i] is None, f"{named[i][0]} failed: {errors[i]}"
    errors = [e for i, e in enumerate(errors) if i not in preludes]
    lost = f"the process ended (status {proc.returncode}): {proc.stderr.strip()[-400:]}"
    errors += [lost] * (len(blocks) - len(errors))
    return {b: e for b, e in zip(blocks, errors) if e is not None}


@dataclasses.dataclass
class Command:
    text: str
    expected: list[str] = dataclasses.field(default_factory=list)


def _join_continuations(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if out and out[-1].endswith("\\"):
            out[-1] = out[-1][:-1].rstrip() + " " + line.strip()
        else:
            out.append(line)
    return out


def console_commands(code: str) -> list[Command]:
    """``$ command`` lines (continuations joined), each with the output lines that follow it."""
    commands: list[Command] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            text = line[2:]
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1].rstrip() + " " + lines[i].strip()
            commands.append(Command(text))
        elif commands:
            commands[-1].expected.append(line)
        i += 1
    return commands


def shell_commands(code: str) -> list[Command]:
    lines = [line for line in code.splitlines() if line.strip()]
    return [Command(t) for t in _join_continuations(lines) if not t.lstrip().startswith("#")]


_TIME = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|µs|us|s|min|h)\b")
_FLOAT = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?")


def normalise(text: str) -> list[str]:
    """Output as compared: blanks collapsed, decimals to 6 significant digits, times elided."""
    lines = []
    for line in text.splitlines():
        line = _TIME.sub("<time>", line)
        line = _FLOAT.sub(lambda m: f"{float(m[0]):.6g}", line)
        lines.append(" ".join(line.split()))
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; an expected ``...`` line matches any number of lines."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(output_matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and output_matches(expected[1:], actual[1:])


def run_command(command: Command, folder: Path) -> str | None:
    """None when the command behaves as the doc says, else what went wrong."""
    proc = subprocess.run(
        ["bash", "-c", command.text],
        cwd=folder,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    expected = normalise("\n".join(command.expected))
    wants_error = any("error:" in line for line in expected)
    if proc.returncode != (2 if wants_error else 0):
        return f"$ {command.text}: exit status {proc.returncode}: {proc.stderr.strip()[-400:]}"
    if expected:
        actual = normalise(proc.stderr if wants_error else proc.stdout)
        if not output_matches(expected, actual):
            shown = "\n".join(actual[:40])
            return f"$ {command.text}: printed\n{shown}\ninstead of\n" + "\n".join(expected)
    return None


def check_data_block(block: Block, folder: Path) -> str | None:
    """toml / json / sql blocks: parsed, a study loaded, a query run on an empty database."""
    try:
        if block.lang == "json":
            data = json.loads(block.code)
            if isinstance(data, dict) and "type" in data:
                import lrlab

                lrlab.from_config(data)
        elif block.lang == "toml":
            _check_toml(block, folder)
        elif block.lang == "sql":
            _check_sql(block.code, folder)
        else:
            return f"no checker for language {block.lang or '(none)'!r}: give the block a language"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip()[:400]}"
    return None


def _check_toml(block: Block, folder: Path) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    data = tomllib.loads(block.code)
    if "task" in data and "schedules" in data:
        from lrlab.lab.study import load_study

        path = folder / f"study-at-line-{block.line}.toml"
        path.write_text(block.code)
        load_study(path)


def _check_sql(sql: str, folder: Path) -> None:
    from lrlab.lab.store import Store

    path = folder / "empty-results.sqlite"
    with Store(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute(sql).fetchall()


def run_doctest(block: Block) -> str | None:
    """The ``>>>`` examples of a block, as a doctest with fresh globals; None when they pass."""
    import doctest

    problems: list[str] = []

    class Runner(doctest.DocTestRunner):
        def report_failure(self, out, test, example, got):
            problems.append(f">>> {example.source.strip()}: printed {got.strip()!r}")

        def report_unexpected_exception(self, out, test, example, exc_info):
            error = f"{exc_info[0].__name__}: {exc_info[1]}"
            problems.append(f">>> {example.source.strip()}: {error}")

    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    test = doctest.DocTestParser().get_doctest(block.code, {}, block.where, block.file, block.line)
    Runner(optionflags=flags).run(test, out=lambda text: None)
    return "; ".join(problems)[:600] if problems else None


def _has_examples(block: Block) -> bool:
    return any(line.lstrip().startswith(">>> ") for line in block.code.splitlines())


def run_file(blocks: list[Block], folder: Path) -> dict[Block, str]:
    """Every runnable block of one file: Python first (one process), then the rest in order."""
    unmarked = [b for b in blocks if b.skip is None and b.snippet is None]
    sessions = [
        b for b in unmarked if b.lang == "pycon" or (b.lang in NOT_CODE and _has_examples(b))
    ]
    examples = {b: run_doctest(b) for b in sessions}
    runnable = [b for b in unmarked if b.lang not in NOT_CODE and b.lang != "pycon"]
    python = [b for b in runnable if b.lang == "python"]
    errors = run_python(python, folder, PRELUDES.get(blocks[0].file)) if python else {}
    for block in runnable:
        if block.lang == "python":
            continue
        if block.lang in SHELL or block.lang == "console":
            split = console_commands if block.lang == "console" else shell_commands
            for command in split(block.code):
                problem = run_command(command, folder)
                if problem:
                    errors[block] = problem
                    break
        else:
            problem = check_data_block(block, folder)
            if problem:
                errors[block] = problem
    errors.update({b: e for b, e in examples.items() if e is not None})
    return errors


# --------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_block_of_the_doc_runs(path, tmp_path):
    blocks = [b for b in ALL_BLOCKS if b.file == path.relative_to(ROOT).as_posix()]
    if not blocks:
        pytest.skip("no code blocks")
    errors = run_file(blocks, prepare_folder(tmp_path))
    assert not errors, "\n\n".join(f"{b.where}: {e}" for b, e in errors.items())


SKIPPED = [b for b in ALL_BLOCKS if b.skip is not None]


@pytest.mark.parametrize("block", SKIPPED, ids=lambda b: f"{b.file}:{b.line}")
def test_skipped_block(block):
    """One skip per block not run here, with its reason (``pytest -ra`` lists them)."""
    pytest.skip(f"{block.where}: {block.skip}")


def test_skipped_blocks_are_few_and_explained():
    code = [b for b in ALL_BLOCKS if b.lang not in NOT_CODE]
    assert len(SKIPPED) <= max(3, len(code) // 6), [b.where for b in SKIPPED]
    for block in SKIPPED:
        assert len(block.skip or "") >= 15, f"{block.where}: say why it is not run"


SNIPPETS = [b for b in ALL_BLOCKS if b.snippet is not None]


@pytest.mark.parametrize("block", SNIPPETS, ids=lambda b: f"{b.file}:{b.snippet}")
def test_named_snippet_is_run_by_a_test(block):
    """A ``<!-- snippet: NAME -->`` block is extracted by name by a test that reads its file."""
    doc = Path(block.file).name
    for test in (ROOT / "tests").glob("test_*.py"):
        text = test.read_text(encoding="utf-8")
        by_name = f"snippet: {block.snippet} -->" in text or (
            "snippet: {name} -->" in text and f'"{block.snippet}"' in text
        )
        if by_name and doc in text:
            return
    pytest.fail(f"{block.where}: no test under tests/ runs snippet {block.snippet!r}")


# --------------------------------------------------------------------------------------------
# The harness itself: a failing block is caught, output is compared


DEMO = """
Some prose.

```python
x = 2
```

```python
assert x == 3, "x is two"
```

<!-- docs-test: skip reason="needs a GPU, which CI does not have" -->
```python
raise SystemExit("not run")
```

```console
$ echo 'a  0.1234567891 in 1.5 s' && echo more
a 0.123457 in 9 s
...
$ echo one
two
```

```
no language
```
"""


def test_the_harness_reports_failing_blocks_and_wrong_output(tmp_path):
    blocks = read_blocks(Path("demo.md"), DEMO)
    assert [b.lang for b in blocks] == ["python", "python", "python", "console", ""]
    assert blocks[2].skip == "needs a GPU, which CI does not have"
    blocks = [dataclasses.replace(b, file="demo.md") for b in blocks]
    errors = run_file(blocks, tmp_path)
    assert set(errors) == {blocks[1], blocks[3], blocks[4]}
    assert errors[blocks[1]].startswith("AssertionError (line 1): x is two")
    assert "$ echo one: printed\none\ninstead of\ntwo" in errors[blocks[3]]
    assert "give the block a language" in errors[blocks[4]]


def test_console_parsing_and_normalisation():
    commands = console_commands("$ lrlab lr X \\\n    --steps 2\n0\t0.1\n1  0.1\n$ ls\n")
    assert [c.text for c in commands] == ["lrlab lr X --steps 2", "ls"]
    assert normalise("\n".join(commands[0].expected)) == ["0 0.1", "1 0.1"]
    assert normalise("took 1 min 40 s, 3.0000001 ms") == ["took <time> <time>, <time>"]
    assert output_matches(["a", "...", "z"], ["a", "b", "c", "z"])
    assert not output_matches(["a", "z"], ["a", "b", "z"])
    assert shell_commands("# note\nlrlab a \\\n  --b  # why\n\nlrlab c\n") == [
        Command("lrlab a --b  # why"),
        Command("lrlab c"),
    ]


def test_every_doc_is_read():
    names = {b.file for b in ALL_BLOCKS}
    assert "README.md" in names and len(names) >= 5
