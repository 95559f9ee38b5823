"""The ``lrlab`` command: a thin argparse layer; each sub-command lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from lrlab.errors import LrlabError, one_line

# each module exposes register(subparsers), which sets func= on its parser(s)
COMMAND_MODULES = ("schedule_cmds", "find", "compare")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrlab",
        description="Learning-rate schedules from four papers, a range test, and a lab.",
    )
    from lrlab import __version__

    parser.add_argument("--version", action="version", version=f"lrlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"lrlab.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"lrlab.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except LrlabError as exc:
        message = " ".join(str(exc).split())
        print(f"lrlab {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable --out, a full disk, ...: the user's to fix, in one line
        print(f"lrlab {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lrlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
