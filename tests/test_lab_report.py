"""The report: statistics per schedule, verdicts against the baseline, markdown, CSV/JSON, the
terminal table, plots, atomicity."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from scipy import stats

from lrlab.lab.contract import StoredTrial, TrialStatus
from lrlab.lab.report import build_report, markdown, rich_table, write_report
from lrlab.lab.stats import bootstrap_ci, hedges_g, p_beats
from lrlab.policies import convergence_epoch

EPOCHS = 6


class FakeStore:
    """What the report reads from a store: the study config and the trials of its cells."""

    def __init__(self):
        self.config: dict = {}
        self.trials: list[StoredTrial] = []

    def study_config(self, name):
        return self.config

    def study_trials(self, name):
        return list(self.trials)


def curve(final: float, plateau: bool = False) -> list[float]:
    """Accuracy per epoch rising linearly to ``final`` (or reaching it at epoch 2, then flat)."""
    if plateau:
        return [final / 2] + [final] * (EPOCHS - 1)
    return [final * (e + 1) / EPOCHS for e in range(EPOCHS)]


def trial(name, seed, final, *, status=TrialStatus.DONE, plateau=False, error=None):
    acc = curve(final, plateau) if status != TrialStatus.FAILED else []
    loss = [1.0 - a for a in acc]
    if status == TrialStatus.DIVERGED:
        loss[-1] = math.nan
    metrics = {
        "train_loss": loss,
        "val_loss": loss,
        "val_acc": acc,
        "test_acc": acc,
        "lr": [0.1] * len(acc),
    }
    final_metrics = (
        {} if status == TrialStatus.FAILED else {"test_acc": acc[-1], "best_test_acc": acc[-1]}
    )
    return StoredTrial(
        schedule=name,
        seed=seed,
        key=f"{name}-{seed}-{status.value}",
        spec={},
        status=status,
        error=error,
        wall_time=1.0 + seed,
        epochs=list(range(1, len(acc) + 1)),
        metrics=metrics if acc else {},
        final=final_metrics,
    )


def fill(store, finals, *, baseline="base", target=0.5, objective=("test_acc", "max"), **kw):
    """A synthetic study: schedule -> objective per seed; ``failed``/``diverged``: (name, seed)."""
    store.config = {
        "name": "syn",
        "description": "synthetic",
        "task": "digits",
        "model": "mlp",
        "epochs": EPOCHS,
        "batch_size": 32,
        "lr_interval": "step",
        "seeds": list(range(max(map(len, finals.values())))),
        "optimizer": {"type": "sgd"},
        "baseline": baseline,
        "objective": {"name": objective[0], "mode": objective[1]},
        "target": target,
        "iterations_per_epoch": 10,
        "schedules": {
            n: {
                "resolved": {"type": "cosine", "lr": 0.1, "total": EPOCHS * 10},
                "steps_per_epoch": 10,
            }
            for n in finals
        },
    }
    plateau = kw.get("plateau", False)
    store.trials = [
        trial(n, s, f, plateau=plateau) for n, vs in finals.items() for s, f in enumerate(vs)
    ]
    for name, seed in kw.get("failed", ()):
        store.trials.append(
            trial(name, seed, 0, status=TrialStatus.FAILED, error="RuntimeError: out of memory")
        )
    for name, seed in kw.get("diverged", ()):
        store.trials.append(trial(name, seed, 0.1, status=TrialStatus.DIVERGED))
    return store


@pytest.fixture
def store():
    return FakeStore()


def base_values(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return list(0.80 + 0.01 * rng.standard_normal(n))


def test_report_statistics_and_verdicts(store):
    base = base_values()
    finals = {
        "base": base,
        "much_better": [v + 0.10 for v in base],
        "noise": list(np.array(base)[::-1]),  # the same values in another order
        "single": [0.99],
    }
    fill(store, finals, failed=[("noise", 9)])
    report = build_report(store, "syn")
    by = {s.name: s for s in report.stats}
    assert [s.name for s in report.stats] == list(finals)  # the study's order
    assert by["base"].comparison is None
    mb = by["much_better"].comparison
    assert mb.verdict == "better"
    p_raw = stats.ttest_ind(finals["much_better"], base, equal_var=False).pvalue
    assert mb.p_welch == pytest.approx(p_raw) and mb.p_welch_holm >= p_raw
    assert mb.beats.estimate == 1.0 and mb.n_pairs == 6
    assert mb.hedges_g == pytest.approx(hedges_g(finals["much_better"], base))
    assert by["noise"].comparison.verdict == "not significant"
    assert by["noise"].failed == 1 and by["noise"].n == 6
    assert by["single"].comparison.verdict.startswith("n/a")
    assert by["base"].objective.mean == pytest.approx(np.mean(base))
    assert by["base"].bootstrap == bootstrap_ci(base)
    assert by["base"].wall_time.mean == pytest.approx(np.mean([1.0 + s for s in range(6)]))
    # accuracy rises linearly to the final value: the target is reached at ceil(EPOCHS * t / final)
    expected = [math.ceil(EPOCHS * 0.5 / f - 1e-12) for f in base]
    assert by["base"].to_target.mean == pytest.approx(np.mean(expected)) and by["base"].reached == 6
    # a linear rise never converges: "never", not the run's length
    assert by["base"].converged == 0 and math.isnan(by["base"].convergence.mean)
    assert all(convergence_epoch(curve(f)) == EPOCHS for f in base)
    # the other metrics are tabulated, the LR is not
    assert set(by["base"].metrics) == {"best_test_acc", "train_loss", "val_loss", "val_acc"}
    assert by["base"].metrics["val_loss"].mean == pytest.approx(1 - np.mean(base))


def test_convergence_epoch_on_the_objective(store):
    fill(store, {"base": [0.8, 0.82], "other": [0.7, 0.71]}, plateau=True)
    report = build_report(store, "syn")
    assert [s.converged for s in report.stats] == [2, 2]
    assert report.stats[0].convergence.mean == convergence_epoch(curve(0.8, True)) == 1


def test_target_baseline_is_the_baselines_mean_objective(store):
    fill(store, {"base": [0.6, 0.7], "fast": [0.9, 0.95]}, target="baseline")
    report = build_report(store, "syn")
    assert report.target == pytest.approx(0.65)
    fast = report.stats[1]
    assert fast.reached == 2
    assert fast.to_target.mean == pytest.approx(
        np.mean([math.ceil(EPOCHS * 0.65 / f) for f in (0.9, 0.95)])
    )


def test_min_objective_ranks_lower_as_better(store):
    base = [0.50, 0.52, 0.51, 0.53, 0.49]
    fill(
        store,
        {"base": base, "lower": [v - 0.1 for v in base], "higher": [v + 0.1 for v in base]},
        objective=("val_loss", "min"),
        target=None,
    )
    # the synthetic trials' val_loss series is 1 - acc: report the objective as its final value
    store.trials = [
        StoredTrial(**{**t.__dict__, "final": {**t.final, "val_loss": t.final["test_acc"]}})
        for t in store.trials
    ]
    report = build_report(store, "syn")
    by = {s.name: s for s in report.stats}
    assert by["lower"].comparison.verdict == "better" and by["higher"].comparison.verdict == "worse"
    assert by["lower"].comparison.delta == pytest.approx(-0.1)
    assert by["lower"].comparison.beats.estimate == 1.0
    text = markdown(report)
    assert "val_loss (mean ± std; lower is better)" in text and "(min: lower is better)" in text
    assert "test_acc %" in text  # a metric other than the objective is tabulated


def test_diverged_trials_are_counted_and_kept_out_of_the_statistics(store):
    base = [0.8, 0.81, 0.79]
    # the baseline diverged on seed 7 (its accuracy there is 10%): it must not lower the target
    fill(
        store,
        {"base": base, "other": [0.85, 0.86, 0.84]},
        target="baseline",
        diverged=[("base", 7), ("other", 8), ("other", 9)],
    )
    report = build_report(store, "syn")
    b, o = report.stats
    assert (b.n, b.diverged, o.n, o.diverged) == (4, 1, 5, 2)
    assert o.divergence_rate == pytest.approx(0.4)
    assert b.objective.n == 3 and b.objective.mean == pytest.approx(np.mean(base))
    assert report.target == pytest.approx(np.mean(base))
    assert o.reached == 3  # the diverged trials neither reach nor miss the target
    assert 7 not in b.values and o.comparison.n_pairs == 3
    text = markdown(report)
    assert "`other`: 2 of 5 diverged (40%)" in text


def test_holm_that_hides_a_difference_says_so(store):
    base = base_values(5)
    rng = np.random.default_rng(3)
    shifted = {
        f"s{i}": list(np.array(base) + 0.012 + 0.006 * rng.standard_normal(5)) for i in range(6)
    }
    fill(store, {"base": base, **shifted})
    report = build_report(store, "syn")
    held = [
        s.comparison
        for s in report.stats[1:]
        if s.comparison.p_welch < 0.05 <= s.comparison.p_welch_holm
    ]
    assert held, "the fixture must have a difference that only Holm makes not significant"
    for c in held:
        assert c.verdict == f"not significant after Holm (uncorrected p = {c.p_welch:.2g})"
        assert c.verdict in markdown(report)


def test_written_report_plots_and_summaries(store, tmp_path):
    fill(store, {"base": [0.8, 0.82, 0.81], "other": [0.7, 0.71, 0.69]}, failed=[("other", 5)])
    report = build_report(store, "syn")
    out = tmp_path / "out"
    paths = write_report(report, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "curves.png",
        "lr_curves.png",
        "per_seed.png",
        "report.md",
        "summary.csv",
        "summary.json",
    ]  # no temp files
    for key in ("lr_curves", "per_seed", "curves"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["report"].read_text()
    assert "| base |" in text and "| other |" in text and "baseline" in text
    assert "![test_acc per seed (mean and 95% CI)](per_seed.png)" in text
    assert "RuntimeError: out of memory" in text  # failed trials are listed
    other = report.stats[1]
    assert f"{100 * other.objective.mean:.2f} ± {100 * other.objective.std:.2f}" in text
    assert other.comparison.verdict in text and "never (0/3)" in text
    assert "test acc at lowest val loss %" in text  # "best" named for what it is
    # the same report twice is the same text
    assert markdown(build_report(store, "syn"), {"x": "y"}) == markdown(report, {"x": "y"})
    data = json.loads(paths["summary_json"].read_text())
    assert data["objective"] == {"name": "test_acc", "mode": "max"}
    assert data["failed_trials"] == [
        {"schedule": "other", "seed": 5, "error": "RuntimeError: out of memory"}
    ]
    o = data["schedules"][1]
    assert o["objective"]["mean"] == pytest.approx(other.objective.mean) and o["failed"] == 1
    assert o["per_seed"] == pytest.approx({"0": 0.7, "1": 0.71, "2": 0.69})
    assert (
        o["comparison"]["p_beats"]["estimate"] == 0.0 and data["schedules"][0]["comparison"] is None
    )
    rows = list(csv.DictReader(io.StringIO(paths["summary_csv"].read_text())))
    assert [r["schedule"] for r in rows] == ["base", "other"]
    assert float(rows[1]["objective.mean"]) == pytest.approx(other.objective.mean)
    assert float(rows[1]["comparison.p_welch_holm"]) == pytest.approx(other.comparison.p_welch_holm)
    assert rows[0]["comparison.verdict"] == "" and rows[1]["objective.ci_bootstrap.low"] != ""


def test_p_beats_in_the_report_is_the_paired_share(store):
    fill(store, {"base": [0.8, 0.8, 0.8, 0.8], "other": [0.9, 0.7, 0.8, 0.85]})
    c = build_report(store, "syn").stats[1].comparison
    assert c.beats == p_beats([(0.9, 0.8), (0.7, 0.8), (0.8, 0.8), (0.85, 0.8)], "max")
    assert c.beats.estimate == pytest.approx(2.5 / 4)


# --------------------------------------------------------------------------------------------
# The terminal table


def wide_study(store):
    """The default study's shape at its widest: 8 schedules with long names, 40 epochs, curves
    that converge, wall times over 100 s, a failed and a diverged trial, a target, and
    differences that only Holm makes not significant."""
    names = [
        "multistep",
        "ralr",
        "clr_triangular2",
        "cosine",
        "cosine_kdecay_warp",
        "poly_kdecay_warp",
        "seq3_epoch",
        "seq4_oscillation",
    ]
    rng = np.random.default_rng(1)
    finals = {
        n: list(0.9 + 0.02 * i / 8 + 0.008 * rng.standard_normal(5)) for i, n in enumerate(names)
    }
    fill(store, finals, baseline="multistep", target=0.6, failed=[("ralr", 5)])
    store.trials = [t for t in store.trials if t.status == TrialStatus.FAILED]
    for name, values in finals.items():
        for seed, final in enumerate(values):
            reach = int(rng.integers(8, 30))  # the epoch from which accuracy stays flat
            acc = [final * min(1.0, (e + 1) / reach) for e in range(40)]
            metrics = {"val_acc": acc, "test_acc": acc, "val_loss": [1 - a for a in acc]}
            wall = 100 + 30 * rng.random()
            trial = StoredTrial(
                name,
                seed,
                f"{name}{seed}",
                {},
                TrialStatus.DONE,
                None,
                wall,
                list(range(1, 41)),
                metrics,
                {"test_acc": final},
            )
            store.trials.append(trial)
    store.trials.append(
        StoredTrial(
            "seq3_epoch",
            6,
            "div",
            {},
            TrialStatus.DIVERGED,
            None,
            50.0,
            [1],
            {"test_acc": [0.1]},
            {},
        )
    )
    return store


def render(table_or_report, width):
    from rich.console import Console

    buf = io.StringIO()
    Console(width=width, file=buf, color_system=None).print(table_or_report)
    return buf.getvalue()


@pytest.mark.parametrize("width", [80, 120, 160])
def test_terminal_table_fits_and_never_cuts_a_number(store, width):
    from lrlab.lab.report import columns, terminal_layout

    report = build_report(wide_study(store), "syn")
    text = render(rich_table(report, width=width), width)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    shown, rows = terminal_layout(report, width)
    assert {"schedule", "objective", "verdict", "n"} <= {c.key for c in shown}
    for row in rows:  # the cells as shown, maybe stacked on two lines
        for c in shown:
            for part in row[c.key].split("\n"):
                assert part in text, (c.key, part)
    if width == 160:  # every terminal column shows, the n column is not empty
        assert len(shown) == sum(1 for c in columns(report) if c.short)
        assert "+1 failed" in text and "(1 div.)" in text and "not shown" not in text
    else:
        assert "not shown at" in text


def test_piped_output_fits_rich_s_80_columns(store):
    report = build_report(wide_study(store), "syn")
    text = render(rich_table(report), 80)  # the console's width, as for `lrlab compare | cat`
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert "multistep" in text and "baseline" in text


# --------------------------------------------------------------------------------------------
# The real store (schema v2): metrics by name per epoch, final metrics


def test_report_reads_the_store(tmp_path):
    from lrlab.lab.store import Store

    with Store(tmp_path / "r.sqlite") as s:
        config = {**wide_config(), "target": 0.5}
        cells = []
        for name, finals in {"base": [0.8, 0.82], "other": [0.9, 0.91]}.items():
            for seed, final in enumerate(finals):
                acc = curve(final)
                rows = [
                    {"epoch": e + 1, "val_loss": 0.01, "val_acc": a, "test_acc": a}
                    for e, a in enumerate(acc)
                ]
                s.record_trial(
                    f"{name}{seed}",
                    {},
                    status="done",
                    epochs=rows,
                    final={"test_acc": final, "best_test_acc": final},
                    wall_time=1.0,
                )
                cells.append((name, seed, f"{name}{seed}"))
        s.save_study("syn", config, cells)
        report = build_report(s, "syn")
    assert report.objective.name == "test_acc" and report.target == 0.5
    assert report.stats[1].objective.mean == pytest.approx(0.905)
    assert report.stats[1].reached == 2 and report.trials[0].epochs == list(range(1, EPOCHS + 1))


def wide_config():
    return {
        "name": "syn",
        "epochs": EPOCHS,
        "seeds": [0, 1],
        "baseline": "base",
        "schedules": {"base": {}, "other": {}},
    }


def test_plot_styles_stay_distinct_for_40_schedules_and_losses_come_first(store):
    from lrlab.lab.plots import curve_metrics, style, zoom

    looks = {(s["color"], s["linestyle"]) for s in map(style, range(40))}
    assert len(looks) == 40 and style(3, baseline=True)["color"] == "black"
    fill(store, {"base": [0.8, 0.82], "other": [0.7, 0.71]})
    assert curve_metrics(build_report(store, "syn")) == [
        "train_loss",
        "val_loss",
        "val_acc",
        "test_acc",
    ]
    # the y-axis spans the second half of the mean curves, not the early epochs
    low, high = zoom([np.array([0.1, 0.5, 0.90, 0.92]), np.array([0.2, 0.6, 0.93, 0.94])])
    assert 0.88 < low < 0.90 and 0.94 < high < 0.95


def test_lr_panels_draw_scheduled_hyperparameters_on_a_second_axis():
    from matplotlib.figure import Figure

    from lrlab import from_config
    from lrlab.lab import plots

    momentum = {"type": "onecycle_momentum", "total_steps": 40}
    entry = {
        "resolved": {"type": "onecycle", "max_lr": 0.1, "total_steps": 40},
        "resolved_hyperparams": {"momentum": momentum},
        "steps_per_epoch": 10,
    }
    ax = Figure().add_subplot()
    plots._hyperparam_curves(ax, entry, 4, "default")
    (right,) = [a for a in ax.figure.axes if a is not ax]
    (line,) = right.get_lines()
    assert line.get_label() == "momentum" and right.get_ylabel() == "momentum"
    assert np.array_equal(line.get_ydata(), from_config(momentum).values(np.arange(41)))
    assert np.array_equal(line.get_xdata(), np.arange(41) / 10)
    bare = Figure().add_subplot()
    plots._hyperparam_curves(bare, {**entry, "resolved_hyperparams": {}}, 4, "default")
    assert bare.figure.axes == [bare]  # nothing scheduled: no second axis
