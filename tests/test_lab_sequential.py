"""Seeds until decided: the anytime-valid t-test, its confidence sequence, and the loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from lrlab.errors import ConfigError
from lrlab.lab.contract import StoredTrial, TrialStatus
from lrlab.lab.sequential import (
    StopReason,
    Verdict,
    anytime_p,
    confidence_sequence,
    log_bayes_factor,
    run_until_decided,
    seed_sequence,
)

D = [0.3, -0.1, 0.5, 0.2, 0.4]


def bayes_factor_of_t(d, g):
    """The mixture Bayes factor as a ratio of densities of the t statistic: noncentral t with
    noncentrality δ sqrt(n), δ ~ N(0, g), over the central t (scipy's densities, by quadrature)."""
    x = np.asarray(d)
    n, t = len(x), stats.ttest_1samp(x, 0).statistic
    h1 = integrate.quad(
        lambda delta: (
            stats.nct.pdf(t, n - 1, delta * math.sqrt(n)) * stats.norm.pdf(delta, 0, math.sqrt(g))
        ),
        -np.inf,
        np.inf,
    )[0]
    return h1 / stats.t.pdf(t, n - 1)


@pytest.mark.parametrize("g", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("d", [D, [1.0, 1.2, 0.9, 1.1, 1.0, 0.7], [-0.2, 0.1, -0.4]])
def test_bayes_factor_matches_its_integral_definition(d, g):
    t2 = stats.ttest_1samp(d, 0).statistic ** 2
    assert math.exp(log_bayes_factor(len(d), t2, g)) == pytest.approx(
        bayes_factor_of_t(d, g), rel=1e-6
    )


def test_confidence_sequence_is_the_set_the_test_does_not_reject():
    level = 0.05
    low, high = confidence_sequence(D * 3, level)
    x = np.asarray(D * 3)
    for edge in (low, high):  # at the binding k, BF_k(edge) is exactly 1/level
        logs = [
            log_bayes_factor(k, stats.ttest_1samp(x[:k] - edge, 0).statistic ** 2)
            for k in range(2, len(x) + 1)
        ]
        assert max(logs) == pytest.approx(math.log(1 / level), rel=1e-9)
    inside = (low + high) / 2
    assert all(
        log_bayes_factor(k, stats.ttest_1samp(x[:k] - inside, 0).statistic ** 2)
        < math.log(1 / level)
        for k in range(2, len(x) + 1)
    )
    assert confidence_sequence([0.1, 0.2], level) == (-math.inf, math.inf)  # too few to say


def test_anytime_p_is_the_running_maximum_of_the_bayes_factor():
    x = np.asarray(D * 2)
    bfs = [
        math.exp(log_bayes_factor(k, stats.ttest_1samp(x[:k], 0).statistic ** 2))
        for k in range(2, 11)
    ]
    assert anytime_p(x) == pytest.approx(min(1.0, 1 / max(bfs)))
    ps = [anytime_p(x[:k]) for k in range(1, 11)]
    assert all(a >= b for a, b in zip(ps, ps[1:]))  # never increases as seeds come


def test_peeking_after_every_seed_keeps_the_level_where_a_t_test_does_not():
    rng = np.random.default_rng(0)
    runs, n = 4000, 30
    d = rng.standard_normal((runs, n))  # the null: mean difference 0
    anytime = np.array([anytime_p(row) <= 0.05 for row in d])
    k = np.arange(1, n + 1)
    mean = np.cumsum(d, axis=1) / k
    sd = np.sqrt((np.cumsum(d * d, axis=1) - k * mean**2) / np.maximum(k - 1, 1))
    t = mean[:, 2:] / (sd[:, 2:] / np.sqrt(k[2:]))
    p_fixed = 2 * stats.t.sf(np.abs(t), k[2:] - 1)  # the t-test after 3, 4, ... seeds
    naive = (p_fixed < 0.05).any(axis=1)
    sigma = math.sqrt(0.05 * 0.95 / runs)
    assert anytime.mean() <= 0.05 + 3 * sigma
    assert naive.mean() > 0.15  # stopping at the first fixed-n p < 0.05: about 4x the level


# --------------------------------------------------------------------------------------------
# The loop, with a fake store and fake training


class FakeLab:
    """A store and a ``train_cells`` writing synthetic trials: objective = seed effect (shared by
    every schedule, as a seed's initialisation and data order are) + schedule effect + noise."""

    def __init__(
        self, effects, *, sd=1.0, seed_sd=1.0, rng=None, fail=(), diverge=(), tick=1.0, metric="acc"
    ):
        self.effects, self.sd, self.seed_sd, self.metric = effects, sd, seed_sd, metric
        self.rng = rng or np.random.default_rng(0)
        self.fail, self.diverge, self.tick = set(fail), set(diverge), tick
        self.seed_effect: dict[int, float] = {}
        self.trials: dict[tuple[str, int], StoredTrial] = {}
        self.asked: list[list[tuple[str, int]]] = []
        self.now = 0.0
        self.config = {
            "name": "seq",
            "baseline": "base",
            "objective": {"name": metric, "mode": "max"},
            "seeds": [0, 1, 2, 3, 4],
            "schedules": {name: {} for name in effects},
        }

    def study_config(self, name):
        return self.config

    def study_trials(self, name):
        return list(self.trials.values())

    def clock(self):
        return self.now

    def train(self, cells):
        self.asked.append(list(cells))
        for name, seed in cells:
            self.now += self.tick
            base = self.seed_effect.setdefault(seed, self.seed_sd * self.rng.standard_normal())
            value = base + self.effects[name] + self.sd * self.rng.standard_normal()
            status = TrialStatus.DONE
            if (name, seed) in self.fail:
                status = TrialStatus.FAILED
            elif (name, seed) in self.diverge:
                status = TrialStatus.DIVERGED
            final = {self.metric: value} if status == TrialStatus.DONE else {}
            self.trials[(name, seed)] = StoredTrial(
                name,
                seed,
                f"{name}/{seed}",
                {},
                status,
                None,
                1.0,
                [1],
                {self.metric: [value]},
                final,
            )


def run(lab, **kw):
    return run_until_decided(lab.config, lab, lab.train, clock=lab.clock, **kw)


def test_false_positive_rate_under_the_null_stays_at_the_level():
    rng = np.random.default_rng(1)
    studies, alpha = 2000, 0.05
    false = 0
    for _ in range(studies):
        lab = FakeLab({"base": 0.0, "a": 0.0, "b": 0.0}, rng=rng)
        report = run(lab, initial_seeds=3, max_seeds=8, alpha=alpha)
        false += any(d.verdict in (Verdict.BETTER, Verdict.WORSE) for d in report.decisions)
    rate = false / studies
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / studies), rate


def test_a_real_difference_is_decided_early_and_only_open_schedules_get_seeds():
    lab = FakeLab({"base": 0.0, "big": 3.0, "worse": -3.0, "tie": 0.0}, sd=0.5)
    report = run(lab, initial_seeds=3, max_seeds=25, margin=1.0)
    by = {d.schedule: d for d in report.decisions}
    assert by["big"].verdict == Verdict.BETTER and by["worse"].verdict == Verdict.WORSE
    assert by["big"].seeds < 10 and by["big"].reason == StopReason.DECIDED
    assert by["tie"].verdict in (Verdict.EQUIVALENT, Verdict.OPEN)
    assert by["tie"].seeds >= by["big"].seeds
    assert report.baseline_seeds == max(d.seeds for d in report.decisions)
    trained = [c for cells in lab.asked for c in cells]
    assert len(trained) == len(set(trained))  # no cell trained twice
    assert {s for n, s in trained if n == "big"} == set(seed_sequence(lab.config, by["big"].seeds))
    assert by["big"].cs_low > 0 and by["big"].width == by["big"].cs_high - by["big"].cs_low


def test_min_objective_calls_lower_better():
    lab = FakeLab({"base": 0.0, "low": -3.0}, sd=0.3)
    lab.config["objective"]["mode"] = "min"
    (d,) = run(lab, max_seeds=20).decisions
    assert d.verdict == Verdict.BETTER and d.mean_diff < 0


def test_equivalence_within_the_margin_stops_a_tie():
    lab = FakeLab({"base": 0.0, "same": 0.0}, sd=0.05, seed_sd=1.0)
    report = run(lab, max_seeds=30, margin=0.5)
    (d,) = report.decisions
    assert d.verdict == Verdict.EQUIVALENT and d.reason == StopReason.DECIDED
    assert -0.5 < d.cs_low < d.cs_high < 0.5 and report.stopped == StopReason.DECIDED


def test_max_seeds_and_budget_stop_with_their_reason():
    lab = FakeLab({"base": 0.0, "same": 0.0}, sd=1.0)
    report = run(lab, initial_seeds=3, max_seeds=6)
    assert report.stopped == StopReason.MAX_SEEDS and report.decisions[0].seeds == 6
    assert report.decisions[0].reason == StopReason.MAX_SEEDS
    lab = FakeLab({"base": 0.0, "same": 0.0}, sd=1.0, tick=10.0)
    report = run(lab, initial_seeds=3, max_seeds=30, budget_s=130.0)
    # rounds of 6 cells (60 s), then 2 cells (20 s) each; no round starts that the previous
    # round's length says would end past 130 s: 60 + 20 + 20 + 20 = 120, a fifth would end at 140
    assert report.stopped == StopReason.BUDGET and report.decisions[0].reason == StopReason.BUDGET
    assert lab.now == 120.0 and report.rounds == 4 and report.decisions[0].seeds == 6


def test_failed_and_diverged_cells_give_no_pair_and_are_not_retried():
    lab = FakeLab({"base": 0.0, "a": 0.0}, fail=[("a", 1)], diverge=[("base", 2)])
    report = run(lab, initial_seeds=3, max_seeds=5)
    (d,) = report.decisions
    assert d.seeds == 5 and d.pairs == 3  # seeds 1 and 2 lost their pair
    trained = [c for cells in lab.asked for c in cells]
    assert trained.count(("a", 1)) == 1


def test_a_rerun_trains_only_what_is_missing():
    lab = FakeLab({"base": 0.0, "a": 0.0})
    run(lab, initial_seeds=3, max_seeds=4)
    lab.asked.clear()
    run(lab, initial_seeds=3, max_seeds=5)
    assert [c for cells in lab.asked for c in cells] == [("base", 4), ("a", 4)]


def test_seeds_per_round_adds_several_seeds_each_round():
    lab = FakeLab({"base": 0.0, "a": 0.0, "b": 0.0})
    report = run(lab, initial_seeds=3, max_seeds=10, seeds_per_round=4)
    assert [len(cells) for cells in lab.asked] == [9, 12, 9]  # 3 x 3 seeds, 3 x 4, 3 x 3 (to 10)
    assert [d.seeds for d in report.decisions] == [10, 10] and report.baseline_seeds == 10


def test_bad_arguments_are_one_line_errors():
    lab = FakeLab({"base": 0.0, "a": 0.0})
    with pytest.raises(ConfigError, match="initial_seeds must be an integer >= 2"):
        run(lab, initial_seeds=1)
    with pytest.raises(ConfigError, match="max_seeds"):
        run(lab, initial_seeds=5, max_seeds=4)
    with pytest.raises(ConfigError, match="budget_s"):
        run(lab, budget_s=-1.0)
    with pytest.raises(ConfigError, match="seeds_per_round must be an integer >= 1"):
        run(lab, seeds_per_round=0)


def test_the_decision_is_reported_in_the_table_markdown_and_json(tmp_path):
    import io
    import json

    from rich.console import Console

    from lrlab.lab.report import (
        build_report,
        decision_rows,
        rich_decision_table,
        write_report,
    )

    lab = FakeLab(
        {"base": 0.0, "cosine_kdecay_warp": 3.0, "seq4_oscillation": 0.0}, sd=0.5, metric="test_acc"
    )
    lab.config["epochs"] = 1
    decision = run(lab, max_seeds=8, margin=0.2)
    for width in (80, 120):
        buf = io.StringIO()
        Console(width=width, file=buf, color_system=None).print(rich_decision_table(decision))
        text = buf.getvalue()
        assert "…" not in text and max(map(len, text.splitlines())) <= width
        for row in decision_rows(decision):
            assert row["schedule"] in text and row["seeds"] in text and row["reason"] in text
    paths = write_report(build_report(lab, "seq"), tmp_path, decision)
    md = paths["report"].read_text()
    assert "## Seeds until decided" in md and "max seeds" in md
    data = json.loads(paths["summary_json"].read_text())["until_decided"]
    assert [s["seeds"] for s in data["schedules"]] == [d.seeds for d in decision.decisions]
    assert data["schedules"][0]["verdict"] == "better"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=25), st.sampled_from([0.01, 0.05]))
def test_p_value_and_interval_are_well_formed(d, level):
    p = anytime_p(d)
    low, high = confidence_sequence(d, level)
    assert 0 < p <= 1 and low <= high


def test_intervals_that_do_not_meet_give_the_latest_one():
    d = [0.0] * 6 + [100.0, 101.0, 99.0, 100.0, 100.0, 101.0] * 3  # a jump the model excludes
    low, high = confidence_sequence(d, 0.05)
    assert low <= high and low < np.mean(d) < high
    assert confidence_sequence([0.0] * 6, 0.05) == (0.0, 0.0)  # no spread: exactly the mean
