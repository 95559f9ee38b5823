"""The ``lrlab`` command: a thin argparse layer; each sub-command lives in its own module.

Every error is one line on stderr, ``lrlab COMMAND: error: ...``, with exit status 2: argparse's
own errors (no usage dump), lrlab's :class:`~lrlab.errors.LrlabError` and operating-system errors
(named by path and reason, never by Python exception name). A closed pipe (``lrlab lr ... | head``)
ends the command quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from lrlab.errors import LrlabError

# each module exposes register(subparsers), which sets func= on its parser(s)
COMMAND_MODULES = ("schedule_cmds", "find", "compare")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to find the usage, no usage dump."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="lrlab",
        description="Learning-rate schedules from four papers, a range test, and a lab.",
    )
    from lrlab import __version__

    parser.add_argument("--version", action="version", version=f"lrlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"lrlab.cli.{name}").register(sub)
    return parser


def os_error_text(exc: OSError) -> str:
    """An OSError as the user reads it: ``PATH: reason`` (no exception name, no errno)."""
    reason = exc.strerror or str(exc) or "input/output error"
    reason = reason[:1].lower() + reason[1:]
    return f"{exc.filename}: {reason}" if exc.filename else reason


def _silence_broken_pipe() -> None:
    """After EPIPE, point stdout at /dev/null so that the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed its one line (or --help): a status, not an exit
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except BrokenPipeError:
        _silence_broken_pipe()
        return 0
    except LrlabError as exc:
        message = " ".join(str(exc).split())
        print(f"lrlab {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable --out, a full disk, ...: the user's to fix, in one line
        message = " ".join(os_error_text(exc).split())
        print(f"lrlab {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lrlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
