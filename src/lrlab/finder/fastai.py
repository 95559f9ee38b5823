"""fastai's ``lr_find`` suggestions, read off a range test as fastai reads them (pure NumPy).

fastai (``fastai.callback.schedule``, v2) records a bias-corrected exponential moving average of
the training loss (``AvgSmoothLoss``, ``beta = 0.98``), drops the first ``num_it // 10`` points and
the last 5, cuts the curve at its first NaN, and offers:

* **valley** (its default): the longest strictly falling subsequence of the smoothed loss, found
  by the longest-decreasing-subsequence recursion; with ``k`` its length and ``end`` its last
  index, ``start = end - k`` and the suggestion is the rate at index
  ``start + int(k / 3) + int(k / 3 / 2)`` (about half-way along; fastai's text says "roughly 2/3");
* **steep**: the rate where the smoothed loss falls fastest per ``log(lr)``, i.e. ``lr[i]`` for the
  smallest ``(loss[i + 1] - loss[i]) / (log lr[i + 1] - log lr[i])``;
* **minimum**: the rate of the lowest smoothed loss, divided by 10.

They are offered beside lrlab's bounds, with their reasons: they read only the training loss and
give one rate, where lrlab reads Smith's two bounds from accuracy. fastai is not a dependency;
``tests/test_finder_fastai.py`` checks these functions against a literal transcription of fastai's
formulas (its O(n^2) valley loop included) on fixed curves.

>>> valley_index([5.0, 4.0, 3.0, 4.0, 2.0, 1.0, 3.0])
(1, 0, 5)
>>> steep_index([1.0, 2.0, 4.0, 8.0], [3.0, 2.9, 1.0, 0.9])
1
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

import numpy as np

from lrlab.finder.smoothing import ema

__all__ = [
    "FASTAI_BETA",
    "FastaiReading",
    "fastai_curve",
    "fastai_readings",
    "steep_index",
    "valley_index",
]

#: fastai's ``AvgSmoothLoss`` default.
FASTAI_BETA = 0.98
#: Points fastai's ``lr_find`` drops at the end of the curve.
FASTAI_TAIL = 5


class FastaiReading(NamedTuple):
    """One fastai suggestion (``lr`` None when the curve is too short) and why."""

    lr: float | None
    reason: str


def fastai_curve(lr, loss, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The (rates, smoothed losses) fastai's suggestion functions would see for this run.

    ``loss`` is the raw training loss per step, ``steps`` the planned length of the test
    (fastai's ``num_it``).

    >>> fastai_curve(np.arange(1.0, 13.0), np.ones(12), 12)[0]
    array([2., 3., 4., 5., 6., 7.])
    """
    lr = np.asarray(lr, dtype=float)
    smooth = ema(np.asarray(loss, dtype=float), FASTAI_BETA)
    lr, smooth = lr[steps // 10 : -FASTAI_TAIL], smooth[steps // 10 : -FASTAI_TAIL]
    bad = ~np.isfinite(smooth)
    if bad.any():
        first = int(np.argmax(bad))
        lr, smooth = lr[:first], smooth[:first]
    return lr, smooth


def valley_index(values) -> tuple[int, int, int]:
    """fastai's valley on ``values``: (index of the suggestion, ``start``, ``end``).

    The length of the longest strictly falling subsequence ending at each point comes from
    patience sorting (O(n log n), the same lengths as fastai's O(n^2) loop); ``end`` is the first
    point where the longest one ends and ``start = end - length`` (0 when nothing falls). The
    index follows fastai's arithmetic, Python's negative indexing included.
    """
    tails: list[float] = []  # tails[k]: the largest possible last value of a run of k + 1 points
    best_len, end = 0, 0
    for i, v in enumerate(np.asarray(values, dtype=float)):
        pos = bisect.bisect_left(tails, -v)  # -v rises strictly where v falls strictly
        if pos == len(tails):
            tails.append(-v)
        else:
            tails[pos] = -v
        if pos + 1 > best_len:
            best_len, end = pos + 1, i
    start = end - best_len if best_len > 1 else 0  # nothing falls: fastai keeps its (0, 0)
    sections = (end - start) / 3
    return start + int(sections) + int(sections / 2), start, end


def steep_index(lr, values) -> int:
    """fastai's steep: the point after which ``values`` falls fastest per ``log(lr)``."""
    lr, values = np.asarray(lr, dtype=float), np.asarray(values, dtype=float)
    slopes = np.diff(values) / np.diff(np.log(lr))
    return int(np.argmin(slopes))


def fastai_readings(lr, loss, steps: int) -> dict[str, FastaiReading]:
    """fastai's valley, steep and minimum for one run (raw training ``loss`` per step)."""
    rates, smooth = fastai_curve(lr, loss, steps)
    if len(rates) < 2 or not np.all(rates > 0):
        why = (
            f"fastai reads the smoothed loss without its first {steps // 10} and last "
            f"{FASTAI_TAIL} points: {len(rates)} usable points left (need 2 with lr > 0)"
        )
        return {name: FastaiReading(None, why) for name in ("valley", "steep", "minimum")}
    idx, start, end = valley_index(smooth)
    valley = FastaiReading(
        float(rates[idx]),
        f"fastai's valley: the longest falling run of the smoothed training loss ({end - start} "
        f"points) ends at lr={rates[end]:.4g}; fastai's point along it is lr={rates[idx]:.4g}",
    )
    s = steep_index(rates, smooth)
    steep = FastaiReading(
        float(rates[s]),
        f"fastai's steep: the smoothed training loss falls fastest per log(lr) at lr={rates[s]:.4g}",
    )
    m = int(np.argmin(smooth))
    minimum = FastaiReading(
        float(rates[m] / 10.0),
        f"fastai's minimum: the smoothed training loss is lowest at lr={rates[m]:.4g}; / 10",
    )
    return {"valley": valley, "steep": steep, "minimum": minimum}
