"""Argument types shared by the sub-commands: bad values fail in argparse, before any work."""

from __future__ import annotations

import argparse
import math
import re

from lrlab.errors import ConfigError

#: the most steps ``lrlab lr`` / ``lrlab plot`` evaluate: 10**8 float64 rates are 800 MB
MAX_STEPS = 10**8


def int_at_least(lo: int, hi: int | None = None):
    """An argparse ``type`` accepting integers >= ``lo`` (and <= ``hi`` when given)."""
    allowed = f"an integer >= {lo}" + ("" if hi is None else f" and <= {hi:_}".replace("_", ","))

    def parse(text: str) -> int:
        shown = repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text)} characters)"
        try:
            value = int(text)
        except ValueError:  # also a number too long to convert (thousands of digits)
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {shown}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {shown}")
        return value

    return parse


def positive_float(text: str) -> float:
    """An argparse ``type`` accepting finite numbers > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


#: Device names --device accepts (``cuda:N`` too).
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def check_device(device: str | None) -> None:
    """A device name from :data:`DEVICES` that this machine has, else a one-line ConfigError."""
    if device in (None, "auto"):
        return
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", str(device)):
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available here (use --device cpu)")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif not torch.backends.mps.is_available():
        raise ConfigError("--device mps: MPS is not available here (use --device cpu)")
