"""Smoothers used by the range test (pure NumPy).

Two are used, for two different jobs:

* **Online, causal:** :func:`ema` -- an exponential moving average with bias correction,
  ``a_t = beta * a_{t-1} + (1 - beta) * x_t``, ``s_t = a_t / (1 - beta ** (t + 1))``. Without the
  correction the first values would be pulled towards 0. It only uses the past, so the range test
  can use it while running (the divergence rule), but it lags the curve by about
  ``beta / (1 - beta)`` points, which would push a bound read from it towards larger rates.
* **Offline, centred:** :func:`local_linear` -- a centred moving average over ``window`` points
  (odd); at the two ends, where a centred window does not fit, the value of a straight line
  fitted to the first (last) ``window`` points (a Savitzky-Golay filter of order 1, SciPy's
  ``mode="interp"``). It has no lag, and its ends are no noisier than its middle (a window that
  shrinks towards the ends would return the raw first point). The bounds are read from it.
  :func:`centred_window` (symmetric shrinking windows, NaN-aware) is used for plots.
"""

from __future__ import annotations

import numpy as np

__all__ = ["centred_window", "ema", "local_linear", "odd_window"]


def ema(values, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average (``beta=0`` returns the input)."""
    x = np.asarray(values, dtype=float)
    out = np.empty_like(x)
    avg = 0.0
    for t, v in enumerate(x):
        avg = beta * avg + (1.0 - beta) * v
        out[t] = avg / (1.0 - beta ** (t + 1))
    return out


def odd_window(n_points: int, fraction: float, minimum: int = 3) -> int:
    """An odd window length of about ``fraction * n_points`` (at least ``minimum``, at most n)."""
    w = max(minimum, int(round(fraction * n_points)))
    if w % 2 == 0:
        w += 1
    if n_points > 0:
        w = min(w, n_points if n_points % 2 == 1 else n_points - 1)
    return max(w, 1)


def centred_window(values, window: int) -> np.ndarray:
    """Centred moving average; near the ends the window shrinks symmetrically (no lag, no padding).

    NaNs are ignored inside a window (a window of only NaNs gives NaN).
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if window <= 1 or n == 0:
        return x.copy()
    half = window // 2
    finite = np.isfinite(x)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, x, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(finite)])
    idx = np.arange(n)
    h = np.minimum(half, np.minimum(idx, n - 1 - idx))
    lo, hi = idx - h, idx + h + 1
    count = ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (csum[hi] - csum[lo]) / count
    out[count == 0] = np.nan
    return out


def local_linear(values, window: int) -> np.ndarray:
    """Centred moving average with linear-fit ends (a Savitzky-Golay filter of order 1 with
    SciPy's ``mode="interp"``, in plain NumPy).

    Inside, the mean of the ``window`` points centred on each point (for a straight line this
    equals the line). For the first and last ``window // 2`` points, the value at that point of
    the least-squares line through the first (last) ``window`` points. ``values`` must be finite;
    ``window`` is made odd and clipped to the largest odd length <= n.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    w = min(int(window), n if n % 2 == 1 else n - 1)
    if w % 2 == 0:
        w -= 1
    if w < 3:
        return x.copy()
    half = w // 2
    csum = np.concatenate([[0.0], np.cumsum(x)])
    out = np.empty(n)
    out[half : n - half] = (csum[w:] - csum[:-w]) / w
    t = np.arange(w, dtype=float)
    for seg, idx in ((x[:w], np.arange(half)), (x[n - w :], np.arange(w - half, w))):
        slope, intercept = np.polyfit(t, seg, 1)
        out[idx + (0 if idx[0] < half else n - w)] = intercept + slope * t[idx]
    return out
