"""Seeds until decided: add seeds only where a comparison with the baseline is still open.

Every schedule starts with a few seeds; after each round, each schedule's comparison with the
baseline is *decided* (better, worse, or equivalent within a margin) or *open*; open schedules
get one more seed (the baseline gets every seed any schedule has, so seeds pair), until every
comparison is decided, or a schedule reaches ``max_seeds``, or the time budget is spent.

Because the number of seeds depends on the results seen, a fixed-n t-test would be invalid
(testing after every seed and stopping at the first p < 0.05 inflates false positives far beyond
5%). The test here is *anytime-valid*: its error guarantee holds simultaneously at every number
of seeds, so any stopping rule keeps it.

The statistic is the paired difference ``d_i = objective(schedule, seed i) - objective(baseline,
seed i)``, i.i.d. over seeds (each seed is an independent draw of initialisation and data order;
a seed where either trial diverged or failed gives no pair). For ``H0: E d = mu0`` it uses the
scale-invariant Gaussian-mixture likelihood ratio: Lai's (1976) t confidence sequence with his
flat mixture over the mean replaced by a Gaussian one, as in Wang and Ramdas (2023), the "safe"
t-test of Grünwald, de Heide and Koolen (2024); Pérez-Ortiz et al. (2024) for its optimality::

    BF_n(mu0) = (1 + n g)^(-1/2) * [(1 + t^2/nu) / (1 + t^2/(nu (1 + n g)))]^((nu + 1)/2)

with ``t`` the one-sample t statistic of ``d_1..d_n - mu0``, ``nu = n - 1`` and a normal
mixture of variance ``g`` over the standardised effect (the Bayes factor of Rouder et al. 2009
with a fixed ``g``; right-Haar prior on the scale). Under H0 and Gaussian differences it is a
nonnegative martingale starting at 1 (for any unknown variance) in the filtration of the
scale-invariant data, so by Ville's inequality ``P(sup_n BF_n >= 1/a) <= a`` (Howard, Ramdas,
McAuliffe and Sekhon 2021, section 2). The bound is on the whole path, so stopping at any time,
chosen in any way, keeps it. Hence:

- the anytime p-value ``p_n = min(1, 1 / max_{k<=n} BF_k(0))`` is valid at any random time;
  Holm's step-down across the ``m`` schedules (valid under any dependence, such as the shared
  baseline) turns them into the verdicts *better* / *worse* at family-wise level ``alpha``;
- ``{mu0 : BF_k(mu0) < m / alpha for every k <= n}`` is a ``1 - alpha/m`` confidence sequence
  for ``E d`` (a closed-form interval, below), simultaneous over schedules by Bonferroni; a
  comparison is *equivalent* when its interval lies inside ``(-margin, margin)``.

The guarantee assumes Gaussian paired differences (as the t-test does); a nonparametric
alternative for bounded metrics, the betting confidence sequence of Waudby-Smith and Ramdas
(2024, JRSS-B 86(1), arXiv:2010.09686), pays a term proportional to the metric's range over n
and cannot resolve a one-point accuracy difference within 30 seeds. ``g = 1`` makes the
interval narrowest around 10 to 30 seeds (about 1.5 times the width of a fixed-n t-interval at
the same n).

References: T. L. Lai (1976), On confidence sequences, Ann. Statist. 4(2), 265-280.
H. Wang, A. Ramdas (2023), Anytime-valid t-tests and confidence sequences for Gaussian means
with unknown variance, arXiv:2310.03722.
S. R. Howard, A. Ramdas, J. McAuliffe, J. Sekhon (2021), Time-uniform, nonparametric,
nonasymptotic confidence sequences, Ann. Statist. 49(2), 1055-1080, arXiv:1810.08240.
P. Grünwald, R. de Heide, W. Koolen (2024), Safe testing, JRSS-B 86(5), arXiv:1906.07801.
M. F. Pérez-Ortiz, T. Lardy, R. de Heide, P. Grünwald (2024), E-statistics, group invariance and
anytime-valid testing, Ann. Statist. 52(4), 1410-1432, arXiv:2208.07610.
J. N. Rouder, P. L. Speckman, D. Sun, R. D. Morey, G. Iverson (2009), Bayesian t tests for
accepting and rejecting the null hypothesis, Psychon. Bull. Rev. 16(2), 225-237.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrlab.lab import stats as st
from lrlab.lab.contract import DEFAULT_OBJECTIVE, FINISHED, Objective, TrialStatus

#: Variance of the normal mixture over the standardised effect (see the module docstring).
MIXTURE_G = 1.0


# --------------------------------------------------------------------------------------------
# The anytime-valid t-test and its confidence sequence


def log_bayes_factor(n: int, t2: float, g: float = MIXTURE_G) -> float:
    """``log BF_n`` of the t-mixture for ``n`` values with squared t statistic ``t2``; 0 (the
    martingale's start) for fewer than 2 values.

    >>> round(log_bayes_factor(10, 9.0), 6), log_bayes_factor(1, 4.0)
    (1.831731, 0.0)
    """
    if n < 2:
        return 0.0
    nu, r = n - 1, 1 + n * g
    if math.isinf(t2):
        return -0.5 * math.log(r) + (nu + 1) / 2 * math.log(r)
    return -0.5 * math.log(r) + (nu + 1) / 2 * (math.log1p(t2 / nu) - math.log1p(t2 / (nu * r)))


def _prefix_stats(d: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(k, mean_k, sd_k)`` of every prefix of ``d`` with at least 2 values."""
    x = np.asarray(d, dtype=np.float64)
    k = np.arange(1, len(x) + 1, dtype=np.float64)
    mean = np.cumsum(x) / k
    # squared deviations from each prefix's mean; centring on x[0] limits cancellation
    c = x - (x[0] if len(x) else 0.0)
    ss = np.maximum(np.cumsum(c * c) - k * (np.cumsum(c) / k) ** 2, 0.0)
    sd = np.sqrt(ss / np.maximum(k - 1, 1))
    return k[1:], mean[1:], sd[1:]


def _log_bf_prefixes(d: Sequence[float], mu0: float, g: float) -> np.ndarray:
    """``log BF_k(mu0)`` for every prefix ``k >= 2`` of ``d``."""
    k, mean, sd = _prefix_stats(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        t2 = k * (mean - mu0) ** 2 / sd**2
    t2 = np.where(sd > 0, t2, np.where(mean == mu0, 0.0, np.inf))
    nu, r = k - 1, 1 + k * g
    with np.errstate(invalid="ignore"):  # inf - inf where t2 is inf: the limit is log r
        gain = np.log1p(t2 / nu) - np.log1p(t2 / (nu * r))
    gain = np.where(np.isinf(t2), np.log(r), gain)
    return -0.5 * np.log(r) + (nu + 1) / 2 * gain


def anytime_p(d: Sequence[float], g: float = MIXTURE_G) -> float:
    """Anytime-valid p-value of ``H0: E d = 0`` after the differences ``d`` (in the order they
    were observed): ``min(1, 1 / max_k BF_k)``.

    >>> anytime_p([0.1]), round(anytime_p([1.0, 1.2, 0.9, 1.1, 1.0]), 6)
    (1.0, 0.031204)
    """
    logs = _log_bf_prefixes(d, 0.0, g)
    return min(1.0, math.exp(-max(0.0, float(logs.max())))) if len(logs) else 1.0


def confidence_sequence(
    d: Sequence[float], level: float, g: float = MIXTURE_G
) -> tuple[float, float]:
    """The ``1 - level`` confidence sequence for ``E d`` after the differences ``d``: the
    intersection over ``k <= n`` of the intervals at each ``k`` (valid at every ``n`` at once).
    If the intervals do not meet, the latest one. At ``k`` the interval is
    ``{mu0 : BF_k(mu0) < 1/level}`` = mean ± ``sqrt(nu u)`` sd/sqrt(k),
    solving ``(1 + u) / (1 + u/r) = K`` with ``u = t^2/nu``, ``r = 1 + k g`` and
    ``K = (sqrt(r) / level)^(2/(nu+1))``; infinite while ``K >= r`` (BF_k cannot reach 1/level).

    >>> low, high = confidence_sequence([1.0, 1.2, 0.9, 1.1, 1.0], 0.05)
    >>> round(low, 4), round(high, 4)
    (0.609, 1.471)
    """
    n, mean, sd = _prefix_stats(d)
    if not len(n):
        return -math.inf, math.inf
    nu, r = n - 1, 1 + n * g
    big_k = np.exp(2 / (nu + 1) * (0.5 * np.log(r) - math.log(level)))
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(big_k < r, (big_k - 1) / (1 - big_k / r), np.inf)
        half = np.where(np.isinf(u), np.inf, np.sqrt(nu * u) * sd / np.sqrt(n))
    low, high = float(np.max(mean - half)), float(np.min(mean + half))
    if low > high:  # the intervals do not meet: the data contradict the model (a miss that
        # has probability <= level); report the latest interval rather than an empty one
        return float(mean[-1] - half[-1]), float(mean[-1] + half[-1])
    return low, high


# --------------------------------------------------------------------------------------------
# Decisions


class Verdict(str, enum.Enum):
    BETTER = "better"
    WORSE = "worse"
    EQUIVALENT = "equivalent"
    OPEN = "undecided"


class StopReason(str, enum.Enum):
    DECIDED = "decided"
    MAX_SEEDS = "max seeds"
    BUDGET = "budget"


@dataclass
class ScheduleDecision:
    """Where one schedule's comparison with the baseline stands."""

    schedule: str
    seeds: int  # seeds trained (cells tried) for this schedule
    pairs: int  # seeds both it and the baseline finished without diverging
    mean_diff: float  # mean of schedule - baseline over the pairs, objective units
    cs_low: float  # the 1 - alpha/m confidence sequence of the mean difference
    cs_high: float
    p_anytime: float
    p_holm: float
    verdict: Verdict = Verdict.OPEN
    reason: StopReason | None = None  # why it got no more seeds; None while it still may

    @property
    def width(self) -> float:
        return self.cs_high - self.cs_low


@dataclass
class DecisionReport:
    study: str
    baseline: str
    objective: Objective
    alpha: float
    margin: float | None
    decisions: list[ScheduleDecision]
    baseline_seeds: int
    rounds: int
    seconds: float
    stopped: StopReason = StopReason.DECIDED
    history: list[dict[str, int]] = field(default_factory=list, repr=False)  # seeds per round


def decide(
    diffs: dict[str, list[float]],
    objective: Objective,
    *,
    alpha: float = st.ALPHA,
    margin: float | None = None,
    g: float = MIXTURE_G,
) -> dict[str, tuple[Verdict, float, float, float, float]]:
    """``schedule -> (verdict, p_anytime, p_holm, cs_low, cs_high)`` from each schedule's paired
    differences (schedule - baseline, in the order observed). Holm over the anytime p-values
    gives better/worse; a Bonferroni ``1 - alpha/m`` confidence sequence inside ``(-margin,
    margin)`` gives equivalent."""
    names = list(diffs)
    p = [anytime_p(diffs[n], g) for n in names]
    adjusted = st.holm(p)
    level = alpha / max(1, len(names))
    out = {}
    for name, p_raw, p_adj in zip(names, p, adjusted):
        low, high = confidence_sequence(diffs[name], level, g)
        mean = float(np.mean(diffs[name])) if diffs[name] else math.nan
        verdict = Verdict.OPEN
        if p_adj <= alpha:
            up = mean > 0
            verdict = Verdict.BETTER if up == (objective.mode == "max") else Verdict.WORSE
        elif margin is not None and -margin < low and high < margin:
            verdict = Verdict.EQUIVALENT
        out[name] = (verdict, p_raw, p_adj, low, high)
    return out


# --------------------------------------------------------------------------------------------
# The loop


def seed_sequence(study_config: dict, count: int) -> list[int]:
    """The first ``count`` seeds: the study's seeds in order, then the next integers above them.

    >>> seed_sequence({"seeds": [3, 1]}, 4)
    [3, 1, 4, 5]
    """
    seeds = [int(s) for s in study_config.get("seeds", [])][:count]
    nxt = max(seeds, default=-1) + 1
    while len(seeds) < count:
        seeds.append(nxt)
        nxt += 1
    return seeds


def _objective(config: dict) -> Objective:
    obj = config.get("objective") or DEFAULT_OBJECTIVE.to_dict()
    return Objective(obj["name"], obj["mode"])


def _read(store: Any, study: str, objective: Objective):
    """``(schedule, seed) -> status`` and ``(schedule, seed) -> objective value`` (done only)."""
    status, values = {}, {}
    for t in store.study_trials(study):
        status[(t.schedule, t.seed)] = t.status
        if t.status == TrialStatus.DONE:
            values[(t.schedule, t.seed)] = t.value(objective)
    return status, values


def _diffs(order: list[int], name: str, base: str, values: dict) -> list[float]:
    out = []
    for seed in order:
        a, b = values.get((name, seed)), values.get((base, seed))
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            out.append(a - b)
    return out


@dataclass
class _State:
    """The loop's bookkeeping: how many seeds each schedule has and the cells already tried."""

    seeds: dict[str, int]
    tried: set[tuple[str, int]] = field(default_factory=set)
    rounds: int = 0
    history: list[dict[str, int]] = field(default_factory=list)


def _train_round(config, store, train_cells, state: _State, order: list[int]) -> None:
    study, base = config["name"], config["baseline"]
    status, _ = _read(store, study, _objective(config))
    state.seeds[base] = max(state.seeds.values())  # every seed pairs with the baseline's
    wanted = [(name, seed) for name, k in state.seeds.items() for seed in order[:k]]
    cells = [c for c in wanted if c not in state.tried and status.get(c) not in FINISHED]
    state.tried.update(wanted)  # a failed cell is tried once per loop, then the next seed comes
    state.rounds += 1
    state.history.append(dict(state.seeds))
    if cells:
        train_cells(cells)


def _evaluate(config, store, state: _State, order, alpha, margin, g) -> list[ScheduleDecision]:
    base, objective = config["baseline"], _objective(config)
    _, values = _read(store, config["name"], objective)
    others = [n for n in config["schedules"] if n != base]
    diffs = {n: _diffs(order[: state.seeds[n]], n, base, values) for n in others}
    verdicts = decide(diffs, objective, alpha=alpha, margin=margin, g=g)
    out = []
    for name in others:
        verdict, p_raw, p_adj, low, high = verdicts[name]
        mean = float(np.mean(diffs[name])) if diffs[name] else math.nan
        out.append(
            ScheduleDecision(
                name, state.seeds[name], len(diffs[name]), mean, low, high, p_raw, p_adj, verdict
            )
        )
    return out


def _check(initial_seeds, max_seeds, seeds_per_round, budget_s, margin, alpha, g) -> None:
    from lrlab import validate as v

    v.integer(initial_seeds, "initial_seeds", lo=2)
    v.integer(max_seeds, "max_seeds", lo=initial_seeds)
    v.integer(seeds_per_round, "seeds_per_round", lo=1)
    v.real(g, "g", lo=0, lo_open=True)
    if budget_s is not None:
        v.real(budget_s, "budget_s", lo=0, lo_open=True)
    if margin is not None:
        v.real(margin, "margin", lo=0, lo_open=True)
    v.real(alpha, "alpha", lo=0, hi=1, lo_open=True, hi_open=True)


def run_until_decided(
    study_config: dict,
    store: Any,
    train_cells: Callable[[list[tuple[str, int]]], object],
    *,
    initial_seeds: int = 3,
    max_seeds: int = 30,
    seeds_per_round: int = 1,
    budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    margin: float | None = None,
    alpha: float = st.ALPHA,
    g: float = MIXTURE_G,
) -> DecisionReport:
    """Train seeds round by round until every comparison with the baseline is decided.

    ``train_cells(cells)`` trains the ``(schedule, seed)`` cells and records them in ``store``
    as cells of the study ``study_config["name"]`` (so ``store.study_trials`` returns them);
    cells already finished in the store are not asked for again (a rerun resumes). ``margin``
    (objective units; default ``study_config["margin"]``, else none) lets a comparison end as
    *equivalent*; without it a true tie runs to ``max_seeds``. Each round adds
    ``seeds_per_round`` seeds to every open schedule (more cells per round keep batched or
    parallel training busy; the test's validity does not depend on it). The budget is checked
    between rounds: no round starts that the previous round's duration says would end past it.
    """
    margin = study_config.get("margin") if margin is None else margin
    _check(initial_seeds, max_seeds, seeds_per_round, budget_s, margin, alpha, g)
    order = seed_sequence(study_config, max_seeds)
    state = _State({n: initial_seeds for n in study_config["schedules"]})
    start = clock()
    while True:
        round_start = clock()
        _train_round(study_config, store, train_cells, state, order)
        last_round = clock() - round_start
        decisions = _evaluate(study_config, store, state, order, alpha, margin, g)
        stopped = _stop(decisions, state, max_seeds, budget_s, clock() - start + last_round)
        if stopped is not None:
            break
        for d in decisions:
            if d.verdict == Verdict.OPEN:
                state.seeds[d.schedule] = min(max_seeds, d.seeds + seeds_per_round)
    return _report(study_config, decisions, state, alpha, margin, clock() - start, stopped)


def _report(config, decisions, state: _State, alpha, margin, seconds, stopped) -> DecisionReport:
    return DecisionReport(
        study=config["name"],
        baseline=config["baseline"],
        objective=_objective(config),
        alpha=alpha,
        margin=margin,
        decisions=decisions,
        baseline_seeds=state.seeds[config["baseline"]],
        rounds=state.rounds,
        seconds=seconds,
        stopped=stopped,
        history=state.history,
    )


def _stop(decisions, state: _State, max_seeds, budget_s, projected_s) -> StopReason | None:
    """Mark why each schedule stopped; the loop's reason to stop, or None to go on."""
    for d in decisions:
        if d.verdict != Verdict.OPEN:
            d.reason = StopReason.DECIDED
        elif state.seeds[d.schedule] >= max_seeds:
            d.reason = StopReason.MAX_SEEDS
    still = [d for d in decisions if d.reason is None]
    if not still:
        decided = all(d.reason == StopReason.DECIDED for d in decisions)
        return StopReason.DECIDED if decided else StopReason.MAX_SEEDS
    if budget_s is not None and projected_s > budget_s:
        for d in still:
            d.reason = StopReason.BUDGET
        return StopReason.BUDGET
    return None
