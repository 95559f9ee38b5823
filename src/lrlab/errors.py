"""Errors lrlab raises on purpose. The CLI prints these as one line, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LrlabError(Exception):
    """Base class of every expected failure (bad input, missing data, ...)."""


class ConfigError(LrlabError, ValueError):
    """A config value is invalid; the message names the field and what is allowed."""


class DatasetNotFoundError(LrlabError, FileNotFoundError):
    """A dataset is not on this machine; the message says how to get it."""


def one_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"``, for logs and tables of failed work."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' hint for a misspelt name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> ConfigError:
    choices = sorted(choices)
    return ConfigError(
        f"unknown {kind} {name!r}{did_you_mean(name, choices)}; allowed: {', '.join(choices)}"
    )
