"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

The data goes to a temporary file in the same folder, is flushed to disk, then ``os.replace``
puts it in place, which is atomic on POSIX and Windows. The file gets the permissions a plain
``open(path, "w")`` would give it (``0o666`` less the umask), not ``mkstemp``'s private 0600.

A path that cannot be written (a folder in its place, a file where a parent folder should be,
no permission, a full disk) raises :class:`OutputPathError`: one line that names the user's path,
never the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from lrlab.errors import ConfigError, LrlabError

#: figure formats chosen from the path's suffix (a path without a suffix gets PNG)
FIGURE_FORMATS = ("png", "pdf", "svg")


class OutputPathError(LrlabError, OSError):
    """A file lrlab was asked to write cannot be written there."""


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no read-only query elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _blocked_parent(path: Path) -> Path | None:
    """The first ancestor of ``path`` that exists and is not a folder, if any."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _check_writable_target(path: Path) -> None:
    if path.is_dir():
        raise OutputPathError(f"cannot write {path}: it is a folder; give a file name")
    blocked = _blocked_parent(path)
    if blocked is not None:
        raise OutputPathError(f"cannot write {path}: {blocked} is a file, not a folder")


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower() if isinstance(exc, OSError) else str(exc)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(binary_file)`` on a temporary file, then move it to ``path``."""
    path = Path(path)
    _check_writable_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputPathError(f"cannot write {path}: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a folder that appeared meanwhile, ...
        _remove_quietly(tmp)
        raise OutputPathError(f"cannot write {path}: {_reason(exc)}") from None
    except BaseException:
        _remove_quietly(tmp)
        raise
    return path


def _remove_quietly(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def figure_format(path: str | os.PathLike) -> str:
    """The figure format a path asks for: its suffix (png, pdf, svg), PNG without one."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if not suffix:
        return "png"
    if suffix not in FIGURE_FORMATS:
        raise ConfigError(
            f"cannot write {path}: unknown figure format {suffix!r}; allowed suffixes: "
            + ", ".join(f".{s}" for s in FIGURE_FORMATS)
        )
    return suffix


def atomic_save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically, as PNG, PDF or SVG after the path's suffix."""
    fmt = figure_format(path)
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
