"""Metrics of a finished run that the decaying-sequences paper reports (METHODS.md section 3)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from lrlab.errors import ConfigError


def convergence_epoch(acc: Sequence[float], tol: float = 0.009, window: int = 4) -> int:
    """The authors' convergence epoch: the first 0-based epoch ``i`` with
    ``sum(|acc[j+1] - acc[j]| for j in i .. i+window-1) < tol``, else ``len(acc)``.

    ``acc`` is the validation accuracy of each epoch. A window needs ``window + 1`` values, so a
    run shorter than that never converges (the answer is its length). A NaN inside a window
    makes that window fail (NaN < tol is false).

    >>> convergence_epoch([0.5, 0.8, 0.9, 0.95, 0.951, 0.952, 0.953, 0.954, 0.955])
    3
    >>> convergence_epoch([0.5, 0.6, 0.7])
    3
    """
    if not (
        isinstance(tol, (int, float))
        and not isinstance(tol, bool)
        and tol > 0
        and math.isfinite(tol)
    ):
        raise ConfigError(f"convergence_epoch: tol must be a finite number > 0, got {tol!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"convergence_epoch: window must be an integer >= 1, got {window!r}")
    values = [float(a) for a in acc]
    diffs = [abs(b - a) for a, b in zip(values, values[1:])]
    for i in range(len(diffs) - window + 1):
        if sum(diffs[i : i + window]) < tol:
            return i
    return len(values)
