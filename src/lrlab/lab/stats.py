"""The statistics of a study's report: pure functions of numbers (no store, no plotting).

Everything is stated in the objective's direction: ``mode="max"`` (higher is better, e.g. an
accuracy) or ``mode="min"`` (lower is better, e.g. a loss). Differences are always
``schedule - baseline`` in the objective's units; a verdict "better" means better in the
objective's direction (a lower loss for ``min``).

- :class:`Summary`: n, mean, sample std and the Student-t 95% interval of the mean.
- :func:`bootstrap_ci`: the BCa bootstrap interval of the mean (``scipy.stats.bootstrap``). It is
  made of bootstrap means, which lie between the smallest and the largest value observed, so a
  bounded metric's interval stays within its bounds (an accuracy's never passes 100%). With few
  seeds it is too narrow (it cannot reach beyond the values seen); the t-interval is kept too.
- :func:`welch_p`, :func:`paired_p`: Welch's and the paired t-test (two-sided); :func:`holm`.
- :func:`p_beats`: the probability that the schedule beats the baseline on a paired seed (ties
  count one half), with a Wilson score interval.
- :func:`hedges_g` (unpaired, pooled sd) and :func:`hedges_gz` (paired differences), each with
  the exact small-sample correction ``J``.
- :func:`epochs_to_target`, :func:`converged_epoch`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
MODES = ("min", "max")

#: Numbers as a sequence or an array; None and NaN are left out wherever they are summarised.
Numbers = Sequence[float | None] | np.ndarray


def finite(values: Numbers) -> np.ndarray:
    """The finite values of ``values`` as a float array (None and NaN left out)."""
    return np.asarray(
        [float(v) for v in values if v is not None and math.isfinite(v)], dtype=np.float64
    )


@dataclass(frozen=True)
class Summary:
    """Mean, sample std and 95% Student-t interval of a set of numbers (NaN where undefined)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @classmethod
    def of(cls, values: Numbers) -> Summary:
        """>>> Summary.of([1.0, 2.0, 3.0]).std
        1.0
        """
        from scipy import stats

        x = finite(values)
        n = len(x)
        if n == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        mean = float(x.mean())
        if n == 1:
            return cls(1, mean, math.nan, math.nan, math.nan)
        std = float(x.std(ddof=1))
        half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * std / math.sqrt(n)
        return cls(n, mean, std, mean - half, mean + half)


def bootstrap_ci(
    values: Numbers, *, confidence: float = 0.95, n_resamples: int = 9999, seed=0
) -> tuple[float, float]:
    """BCa bootstrap interval of the mean, deterministic for a given ``seed``.

    NaN for fewer than 2 values; ``(v, v)`` when every value is ``v`` (no spread to resample);
    the percentile interval where BCa is undefined (a spread so small its acceleration
    underflows).

    >>> bootstrap_ci([0.5, 0.5, 0.5])
    (0.5, 0.5)
    """
    x = finite(values)
    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    low, high = _scipy_bootstrap(x, confidence, n_resamples, seed, "BCa")
    if not (math.isfinite(low) and math.isfinite(high)):  # BCa undefined: the percentile one
        low, high = _scipy_bootstrap(x, confidence, n_resamples, seed, "percentile")
    return low, high


def _scipy_bootstrap(x: np.ndarray, confidence: float, n_resamples: int, seed, method: str):
    from scipy import stats

    with warnings.catch_warnings():  # scipy warns when few distinct resamples exist
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (x,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method=method,
            rng=np.random.default_rng(seed),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _pvalue(result) -> float:
    p = float(result.pvalue)
    return p if math.isfinite(p) else math.nan


def welch_p(x: Numbers, y: Numbers) -> float:
    """Two-sided Welch t-test p-value; NaN with fewer than 2 values on a side. Two constant
    samples give 1 if equal and NaN otherwise (no t statistic)."""
    from scipy import stats

    a, b = finite(x), finite(y)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else math.nan
    with warnings.catch_warnings():  # nearly constant samples: scipy warns, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        return _pvalue(stats.ttest_ind(a, b, equal_var=False))


def paired_p(d: Numbers) -> float:
    """Two-sided paired t-test p-value on the differences ``d``; 1 when all are 0, NaN with fewer
    than 2 or a constant non-zero difference (no t statistic)."""
    from scipy import stats

    diff = finite(d)
    if len(diff) < 2:
        return math.nan
    if np.all(diff == 0):
        return 1.0
    if diff.std() == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _pvalue(stats.ttest_1samp(diff, 0.0))


def pairs(values: Mapping[int, float], base: Mapping[int, float]) -> list[tuple[float, float]]:
    """``(schedule, baseline)`` values of the seeds both have finite, in seed order."""
    ok = [s for s in values if s in base and math.isfinite(values[s]) and math.isfinite(base[s])]
    return [(values[s], base[s]) for s in sorted(ok)]


def compare_to_baseline(
    values: Mapping[int, float], base: Mapping[int, float]
) -> tuple[float, float, float, int]:
    """``(delta, p_welch, p_paired, n_pairs)`` of per-seed values of a schedule and the baseline;
    ``delta`` is the difference of the means (schedule - baseline)."""
    x, y = finite(list(values.values())), finite(list(base.values()))
    delta = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
    matched = pairs(values, base)
    p_paired = paired_p([a - b for a, b in matched])
    return delta, welch_p(x, y), p_paired, len(matched)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count).

    >>> [round(p, 12) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    idx = [i for i, p in enumerate(pvalues) if math.isfinite(p)]
    m = len(idx)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


@dataclass(frozen=True)
class Proportion:
    """An estimated probability with its Wilson score interval, over ``n`` trials."""

    estimate: float
    low: float
    high: float
    n: int


def wilson(successes: float, n: int, confidence: float = 0.95) -> Proportion:
    """Wilson score interval of a proportion (stays within [0, 1], good for small ``n``).

    >>> wilson(0, 0).n, round(wilson(5, 5).low, 4)
    (0, 0.5655)
    """
    from scipy import stats

    if n == 0:
        return Proportion(math.nan, math.nan, math.nan, 0)
    p = successes / n
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Proportion(p, max(0.0, center - half), min(1.0, center + half), n)


def p_beats(matched: Sequence[tuple[float, float]], mode: str) -> Proportion:
    """Probability that the schedule is better than the baseline on a seed both ran (ties count
    one half), from ``(schedule, baseline)`` pairs, with its Wilson interval.

    >>> p_beats([(0.9, 0.8), (0.7, 0.8), (0.8, 0.8)], "max").estimate
    0.5
    """
    sign = 1.0 if mode == "max" else -1.0
    wins = sum(1.0 if sign * (a - b) > 0 else 0.5 if a == b else 0.0 for a, b in matched)
    return wilson(wins, len(matched))


def hedges_j(df: float) -> float:
    """Exact small-sample correction ``J(df) = Γ(df/2) / (sqrt(df/2) Γ((df-1)/2))`` of Cohen's d
    (Hedges 1981); about ``1 - 3 / (4 df - 1)``.

    >>> round(hedges_j(4), 6)
    0.797885
    """
    if df <= 1:
        return math.nan
    return math.exp(math.lgamma(df / 2) - math.lgamma((df - 1) / 2)) / math.sqrt(df / 2)


def hedges_g(x: Numbers, y: Numbers) -> float:
    """Hedges' g of ``x - y``: the mean difference over the pooled sample std, times J(nx+ny-2).
    NaN with fewer than 2 values on a side or no spread."""
    a, b = finite(x), finite(y)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    df = len(a) + len(b) - 2
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / df)
    if pooled == 0:
        return math.nan
    return float(a.mean() - b.mean()) / pooled * hedges_j(df)


def hedges_gz(d: Numbers) -> float:
    """Paired effect size: mean over std of the differences ``d`` (Cohen's d_z) times J(n-1)."""
    diff = finite(d)
    if len(diff) < 3 or diff.std() == 0:  # J(1) is undefined: two pairs give no estimate
        return math.nan
    return float(diff.mean() / diff.std(ddof=1)) * hedges_j(len(diff) - 1)


def epochs_to_target(
    values: Sequence[float], target: float, mode: str = "max", epochs: Sequence[int] | None = None
) -> int | None:
    """The epoch at which ``values`` (one per epoch) first reach ``target`` or better; None if
    never. ``epochs`` are the epoch numbers (default 1, 2, ...).

    >>> epochs_to_target([0.1, 0.5, 0.7], 0.5), epochs_to_target([3.0, 2.0], 1.0, "min")
    (2, None)
    """
    for i, value in enumerate(values):
        if math.isfinite(value) and (value >= target if mode == "max" else value <= target):
            return int(epochs[i]) if epochs is not None else i + 1
    return None


def converged_epoch(values: Sequence[float], tol: float = 0.009, window: int = 4) -> int | None:
    """The convergence epoch of a per-epoch series (METHODS.md section 3: the first 0-based epoch
    from which the next ``window`` changes sum to less than ``tol``); None if it never does.

    >>> converged_epoch([0.5, 0.8, 0.9, 0.95, 0.951, 0.952, 0.953, 0.954]), converged_epoch([1, 2])
    (3, None)
    """
    from lrlab.policies import convergence_epoch

    series = [float(v) for v in values]
    epoch = convergence_epoch(series, tol=tol, window=window)
    return None if epoch >= len(series) else epoch


def verdict(delta: float, p_raw: float, p_holm: float, mode: str, alpha: float = ALPHA) -> str:
    """ "better" / "worse" (in the objective's direction) when the Holm-corrected p is below
    ``alpha``; "not significant", saying so when only the correction made it so.

    >>> verdict(-0.2, 0.01, 0.03, "min"), verdict(0.1, 0.02, 0.06, "max")
    ('better', 'not significant after Holm (uncorrected p = 0.02)')
    """
    if not math.isfinite(p_holm):
        return "n/a"
    if p_holm < alpha:
        return "better" if (delta > 0) == (mode == "max") else "worse"
    if p_raw < alpha:
        return f"not significant after Holm (uncorrected p = {p_raw:.2g})"
    return "not significant"
