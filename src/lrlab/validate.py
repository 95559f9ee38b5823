"""Input validation, in one place: every value a user hands lrlab is checked by these functions.

Layer 0 (imports nothing of lrlab but :mod:`lrlab.errors`). Each checker takes the value and
``where``, the full path of the field (``"warmup.base.steps"``, ``"schedules.ralr.p"``,
``"milestones[1]"``), and either returns the value normalised or raises one
:class:`~lrlab.errors.ConfigError` whose single line names that path and what is allowed.

The rules, the same everywhere:

* an integer is an ``int`` or an integral ``float`` (``10.0``) no larger than :data:`MAX_INT`;
  never a ``bool``, a string or a fractional float;
* a real is a finite ``int`` or ``float`` within its bounds (a 400-digit integer is out of bounds,
  not an ``OverflowError``); never a ``bool`` or a string;
* a list is a ``list`` or ``tuple`` (a string is not a list of characters);
* nesting deeper than :data:`MAX_DEPTH` is refused before anything recurses into it.

>>> integer(3.0, "epochs", lo=1)
3
>>> integer(True, "epochs", lo=1)
Traceback (most recent call last):
...
lrlab.errors.ConfigError: epochs must be an integer >= 1, got True
>>> sequence([1.7, 2.2], "milestones", integer)
Traceback (most recent call last):
...
lrlab.errors.ConfigError: milestones[0] must be an integer, got 1.7
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from lrlab.errors import ConfigError, unknown_name_error

T = TypeVar("T")

#: The largest integer accepted anywhere (steps, epochs, seeds, sizes): 2**53, the last integer a
#: float64 step counter still counts exactly.
MAX_INT = 2**53
#: The deepest nesting of dicts and lists accepted in a config, study file or state dict.
MAX_DEPTH = 64
#: The largest finite float; reals beyond it are refused rather than overflowing.
MAX_REAL = 1.7976931348623157e308


def field(where: str, key: str | int) -> str:
    """The path of a child field: ``field("warmup", "base") == "warmup.base"``, ``"m[0]"``."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def describe(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to one short line, so a huge or deep value never floods an error."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # ValueError: int too large to print
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bounds(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    parts = []
    if lo is not None:
        parts.append(f"> {lo}" if lo_open else f">= {lo}")
    if hi is not None:
        parts.append(f"< {hi}" if hi_open else f"<= {hi}")
    return " and ".join(parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(value: Any, where: str, *, lo: int | None = None, hi: int | None = MAX_INT) -> int:
    """An integer in ``[lo, hi]`` (an integral float is accepted and converted)."""
    shown_hi = hi if hi is not None and hi != MAX_INT else None
    allowed = " ".join(t for t in ("an integer", _bounds(lo, shown_hi, False, False)) if t)
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_INT:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where} must be {allowed}, got {describe(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi == MAX_INT and value > hi:
            allowed += f" <= 2**53 ({MAX_INT})"
        raise ConfigError(f"{where} must be {allowed}, got {describe(value)}")
    return value


def real(
    value: Any,
    where: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """A finite real in the given bounds, returned as a ``float``."""
    allowed = " ".join(t for t in ("a finite number", _bounds(lo, hi, lo_open, hi_open)) if t)
    if not _is_number(value) or (isinstance(value, int) and abs(value) > MAX_REAL):
        raise ConfigError(f"{where} must be {allowed}, got {describe(value)}")
    number = float(value)
    too_low = lo is not None and (number <= lo if lo_open else number < lo)
    too_high = hi is not None and (number >= hi if hi_open else number > hi)
    if not math.isfinite(number) or too_low or too_high:
        raise ConfigError(f"{where} must be {allowed}, got {describe(value)}")
    return number


def boolean(value: Any, where: str) -> bool:
    """``True`` or ``False`` only (not 0/1, not "yes")."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {describe(value)}")
    return value


def string(value: Any, where: str, *, nonempty: bool = True) -> str:
    """A string (non-empty unless told otherwise)."""
    if not isinstance(value, str) or (nonempty and not value):
        what = "a non-empty string" if nonempty else "a string"
        raise ConfigError(f"{where} must be {what}, got {describe(value)}")
    return value


def choice(value: Any, where: str, choices: Collection[str]) -> str:
    """One of ``choices``; a misspelling gets a 'did you mean' hint."""
    if not isinstance(value, str):
        allowed = ", ".join(sorted(choices))
        raise ConfigError(f"{where} must be one of {allowed}, got {describe(value)}")
    if value not in choices:
        raise unknown_name_error(where, value, choices)
    return value


def sequence(
    value: Any,
    where: str,
    item: Callable[[Any, str], T],
    *,
    min_len: int = 0,
    max_len: int | None = None,
) -> tuple[T, ...]:
    """A list or tuple whose every element passes ``item(element, "where[i]")``."""
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where} must be a list, got {describe(value)}")
    if len(value) < min_len or (max_len is not None and len(value) > max_len):
        size = f"at least {min_len}" if max_len is None else f"{min_len} to {max_len}"
        raise ConfigError(f"{where} must be a list of {size} items, got {len(value)}")
    return tuple(item(v, field(where, i)) for i, v in enumerate(value))


def increasing(values: Sequence[float], where: str, *, strict: bool = True) -> None:
    """Each element larger than the one before (or not smaller, when ``strict=False``)."""
    for i in range(1, len(values)):
        if values[i] < values[i - 1] or (strict and values[i] == values[i - 1]):
            order = "strictly increasing" if strict else "non-decreasing"
            raise ConfigError(f"{where} must be {order}, got {describe(list(values))}")


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    """A dict (a TOML table, a JSON object)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table (a dict), got {describe(value)}")
    return value


def known_keys(
    value: Mapping[str, Any], where: str, allowed: Iterable[str], required: Iterable[str] = ()
) -> None:
    """Every key of ``value`` is allowed and every required key is present."""
    allowed = set(allowed)
    for key in value:
        if key not in allowed:
            raise unknown_name_error(f"key in {where}" if where else "key", key, allowed)
    missing = [key for key in required if key not in value]
    if missing:
        names = ", ".join(repr(k) for k in missing)
        raise ConfigError(f"{where or 'config'} is missing required key(s) {names}")


def depth(value: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """Refuse dicts and lists nested deeper than ``limit`` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if not isinstance(node, Mapping | list | tuple):
            continue
        if level > limit:
            raise ConfigError(f"{where or 'config'} is nested deeper than {limit} levels")
        children = node.values() if isinstance(node, Mapping) else node
        stack.extend((child, level + 1) for child in children)
