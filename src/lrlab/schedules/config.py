"""Reading and writing config files: JSON or TOML, a path or inline JSON. Data only, no code."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lrlab import validate
from lrlab.atomic import atomic_write_text
from lrlab.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load_config(source: str | Path | dict) -> dict[str, Any]:
    """A config dict from a ``.json`` / ``.toml`` path, an inline JSON string, or a dict.

    Data nested deeper than :data:`lrlab.validate.MAX_DEPTH` is refused, including what makes
    the JSON or TOML parser itself recurse too deeply.

    >>> load_config('{"type": "constant", "lr": 0.1}')
    {'type': 'constant', 'lr': 0.1}
    """
    if isinstance(source, dict):
        return source
    text = str(source).strip()
    if text.startswith("{"):
        return _parse(text, "inline config", json.loads)
    path = Path(text)
    if not path.is_file():
        raise ConfigError(
            f"config {text!r} is neither inline JSON nor an existing .json/.toml file"
        )
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    parser = tomllib.loads if path.suffix.lower() == ".toml" else json.loads
    return _parse(content, str(path), parser)


def _parse(text: str, where: str, parser) -> dict[str, Any]:
    try:
        data = parser(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        what = "is not valid JSON" if parser is json.loads else "is not valid TOML"
        raise ConfigError(f"{where} {what}: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{where} is nested too deeply (more than {validate.MAX_DEPTH} levels are refused)"
        ) from None
    validate.depth(data, where)
    return dict(validate.mapping(data, where))


def dump_config(config: dict[str, Any], path: str | Path) -> None:
    """Write ``config`` as JSON (or TOML for a ``.toml`` path, nested configs as tables)."""
    text = (
        _to_toml(config)
        if Path(path).suffix.lower() == ".toml"
        else json.dumps(config, indent=2) + "\n"
    )
    atomic_write_text(path, text)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {value!r} to TOML")


def _to_toml(config: dict[str, Any]) -> str:
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in config.items())
