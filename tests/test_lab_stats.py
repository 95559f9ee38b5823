"""lrlab.lab.stats against scipy and exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats

from lrlab.lab.stats import (
    Summary,
    bootstrap_ci,
    compare_to_baseline,
    converged_epoch,
    epochs_to_target,
    hedges_g,
    hedges_gz,
    hedges_j,
    holm,
    p_beats,
    paired_p,
    verdict,
    welch_p,
    wilson,
)

X = [0.81, 0.84, 0.79, 0.86, 0.83]
Y = [0.80, 0.82, 0.80, 0.81, 0.79]


def test_summary_matches_scipy():
    s = Summary.of(X)
    low, high = stats.t.interval(0.95, len(X) - 1, loc=np.mean(X), scale=stats.sem(X))
    assert (s.n, s.mean, s.std) == (5, pytest.approx(np.mean(X)), pytest.approx(np.std(X, ddof=1)))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    one = Summary.of([0.5, float("nan"), None])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert Summary.of([]).n == 0


def test_bootstrap_is_scipys_bca_and_reproducible():
    ref = stats.bootstrap((np.array(X),), np.mean, method="BCa", rng=np.random.default_rng(0))
    low, high = bootstrap_ci(X)
    assert (low, high) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert bootstrap_ci(X) == (low, high)  # the same report twice is the same text
    assert all(math.isnan(v) for v in bootstrap_ci([0.5]))
    assert bootstrap_ci([0.7, 0.7]) == (0.7, 0.7)


def test_bootstrap_of_a_bounded_metric_stays_within_its_bounds():
    acc = [1.0, 0.99, 1.0, 0.97, 1.0]  # accuracies near 100%: the t-interval passes 1
    assert Summary.of(acc).ci_high > 1.0
    low, high = bootstrap_ci(acc)
    assert min(acc) <= low <= high <= 1.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=12))
@example([0.0, 8.2725751162207e-216])  # BCa's acceleration underflows: the percentile interval
def test_bootstrap_interval_lies_within_the_values(values):
    low, high = bootstrap_ci(values, n_resamples=999)
    assert min(values) - 1e-12 <= low <= high <= max(values) + 1e-12


def test_tests_match_scipy():
    assert welch_p(X, Y) == pytest.approx(stats.ttest_ind(X, Y, equal_var=False).pvalue)
    assert paired_p(np.subtract(X, Y)) == pytest.approx(stats.ttest_rel(X, Y).pvalue)
    assert math.isnan(welch_p([0.5], Y)) and welch_p([0.5, 0.5], [0.5, 0.5]) == 1.0
    assert math.isnan(welch_p([0.5, 0.5], [0.6, 0.6]))  # two constants: no t statistic
    assert paired_p([0.0, 0.0]) == 1.0 and math.isnan(paired_p([0.1, 0.1]))


def test_compare_to_baseline_uses_welch_and_paired_tests():
    x = {0: 0.90, 1: 0.92, 2: 0.91, 3: 0.95}
    y = {0: 0.85, 1: 0.88, 2: 0.86, 4: 0.80}
    delta, p_w, p_p, n_pairs = compare_to_baseline(x, y)
    assert delta == pytest.approx(np.mean(list(x.values())) - np.mean(list(y.values())))
    assert p_w == pytest.approx(
        stats.ttest_ind(list(x.values()), list(y.values()), equal_var=False).pvalue
    )
    assert n_pairs == 3
    assert p_p == pytest.approx(
        stats.ttest_rel([x[s] for s in (0, 1, 2)], [y[s] for s in (0, 1, 2)]).pvalue
    )
    same = compare_to_baseline({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5})
    assert same[1] == 1.0 and same[2] == 1.0
    assert math.isnan(compare_to_baseline({0: 0.9}, y)[1])


def test_holm_adjustment_exact():
    # sorted 0.01, 0.03, 0.04 (m = 3): 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    adj = holm([0.01, 0.04, 0.03, math.nan])
    assert adj[:3] == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06)]
    assert math.isnan(adj[3])
    assert holm([0.6, 0.7]) == [pytest.approx(1.0), pytest.approx(1.0)]  # capped at 1


def test_wilson_matches_scipy_and_ties_count_half():
    for k, n in [(0, 5), (3, 5), (5, 5), (7, 20)]:
        ref = stats.binomtest(k, n).proportion_ci(method="wilson")
        w = wilson(k, n)
        assert (w.estimate, w.low, w.high) == (
            k / n,
            pytest.approx(ref.low),
            pytest.approx(ref.high),
        )
    pb = p_beats([(0.9, 0.8), (0.7, 0.8), (0.8, 0.8), (0.95, 0.8)], "max")
    assert pb.estimate == 2.5 / 4 and pb.n == 4
    assert p_beats([(0.1, 0.2), (0.3, 0.2)], "min").estimate == 0.5  # lower wins for min
    assert math.isnan(p_beats([], "max").estimate)


def test_effect_sizes_exact():
    # J(4) = Γ(2) / (sqrt(2) Γ(3/2)) = 2 / sqrt(2π); J(2) = Γ(1) / Γ(1/2) = 1 / sqrt(π)
    assert hedges_j(4) == pytest.approx(2 / math.sqrt(2 * math.pi), rel=1e-14)
    assert hedges_j(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-14)
    assert hedges_j(200) == pytest.approx(1 - 3 / (4 * 200 - 1), rel=1e-5)
    # x - y: mean difference 1, pooled variance (2 * 1 + 2 * 1) / 4 = 1, so d = 1
    assert hedges_g([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == pytest.approx(hedges_j(4))
    # differences 1, 2, 3: mean 2, sd 1, d_z = 2
    assert hedges_gz([1.0, 2.0, 3.0]) == pytest.approx(2 / math.sqrt(math.pi))
    assert math.isnan(hedges_g([1.0], [0.0, 1.0])) and math.isnan(hedges_gz([1.0, 2.0]))


def test_epochs_to_target_in_both_directions():
    assert epochs_to_target([0.1, 0.5, 0.7], 0.5) == 2
    assert epochs_to_target([0.1, 0.2], 0.5) is None
    assert epochs_to_target([2.0, float("nan"), 0.9], 1.0, "min") == 3
    assert epochs_to_target([0.1, 0.6], 0.5, epochs=[5, 10]) == 10


def test_converged_epoch_says_never_as_none():
    assert converged_epoch([0.5, 0.8, 0.9, 0.95, 0.951, 0.952, 0.953, 0.954, 0.955]) == 3
    assert converged_epoch([0.5, 0.6, 0.7]) is None
    assert converged_epoch([0.1 * e for e in range(10)]) is None


def test_verdicts_follow_the_objectives_direction():
    assert verdict(0.02, 0.001, 0.003, "max") == "better"
    assert verdict(0.02, 0.001, 0.003, "min") == "worse"
    assert verdict(-0.02, 0.001, 0.003, "min") == "better"
    assert verdict(0.02, 0.2, 0.4, "max") == "not significant"
    held = verdict(0.05, 0.02, 0.08, "max")
    assert held.startswith("not significant after Holm") and "0.02" in held
    assert verdict(0.1, math.nan, math.nan, "max") == "n/a"
