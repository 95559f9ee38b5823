"""The report: statistics, significance tests against the baseline, markdown, plots, atomicity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lrlab.lab.report import (
    Summary,
    build_report,
    compare_to_baseline,
    epochs_to_target,
    holm,
    markdown,
    rich_table,
    write_report,
)
from lrlab.lab.store import EPOCH_COLUMNS, Store
from lrlab.policies import convergence_epoch

EPOCHS = 6


def fill(
    store, finals: dict[str, list[float]], *, baseline="base", target=0.5, failed=(), seeds=None
):
    """A synthetic study: schedule -> final test accuracy per seed; accuracy curves rise to it."""
    names = list(finals)
    config = {
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
        "target_acc": target,
        "data_dir": None,
        "iterations_per_epoch": 10,
        "schedules": {
            n: {
                "config": {},
                "resolved": {"type": "cosine", "lr": 0.1, "total": EPOCHS * 10},
                "optimizer": {"type": "sgd"},
                "lr_interval": "step",
                "steps_per_epoch": 10,
            }
            for n in names
        },
    }
    cells = []
    for name, values in finals.items():
        for seed, final in enumerate(values):
            key = f"{name}-{seed}"
            cells.append((name, seed if seeds is None else seeds[name][seed], key))
            acc = [final * (e + 1) / EPOCHS for e in range(EPOCHS)]
            rows = [
                {"epoch": e + 1, **{c: 0.01 for c in EPOCH_COLUMNS}, "val_acc": a, "test_acc": a}
                for e, a in enumerate(acc)
            ]
            store.record_trial(
                key,
                {},
                status="done",
                epochs=rows,
                final={"best_epoch": EPOCHS, "best_test_acc": final, "test_acc": final},
                wall_time=1.0 + seed,
            )
    for name, seed in failed:
        key = f"{name}-failed-{seed}"
        cells.append((name, seed, key))
        store.record_trial(key, {}, status="failed", error="RuntimeError: out of memory")
    store.save_study("syn", config, cells)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "r.sqlite") as s:
        yield s


def test_summary_matches_scipy():
    x = [0.81, 0.84, 0.79, 0.86, 0.83]
    s = Summary.of(x)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert (
        s.n == 5
        and s.mean == pytest.approx(np.mean(x))
        and s.std == pytest.approx(np.std(x, ddof=1))
    )
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    one = Summary.of([0.5, float("nan")])  # NaN is left out; one value has no spread
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert Summary.of([]).n == 0


def test_holm_adjustment():
    p = [0.01, 0.04, 0.03, float("nan")]
    adj = holm(p)
    m = 3
    order = sorted(range(3), key=lambda i: p[i])
    expected, running = {}, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        expected[i] = running
    assert adj[:3] == [pytest.approx(expected[i]) for i in range(3)] and math.isnan(adj[3])
    assert all(a >= r for a, r in zip(adj[:3], p[:3]))


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
    assert same[1] == 1.0 and same[2] == 1.0  # identical constant samples: nothing to see
    assert math.isnan(compare_to_baseline({0: 0.9}, y)[1])  # one seed cannot be tested


def test_epochs_to_target():
    assert epochs_to_target([0.1, 0.5, 0.7], 0.5) == 2
    assert epochs_to_target([0.1, 0.2], 0.5) is None


def test_report_statistics_and_verdicts(store):
    rng = np.random.default_rng(0)
    base = list(0.80 + 0.01 * rng.standard_normal(6))
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
    assert by["much_better"].comparison.verdict == "better"
    p_raw = stats.ttest_ind(finals["much_better"], base, equal_var=False).pvalue
    assert by["much_better"].comparison.p_welch == pytest.approx(p_raw)
    assert by["much_better"].comparison.p_welch_holm >= p_raw
    assert by["noise"].comparison.verdict == "not significant"
    assert by["noise"].failed == 1 and by["noise"].n == 6
    assert by["single"].comparison.verdict.startswith("n/a")
    assert by["base"].final_acc.mean == pytest.approx(np.mean(base))
    assert by["base"].wall_time.mean == pytest.approx(np.mean([1.0 + s for s in range(6)]))
    # accuracy rises linearly to the final value: the target is reached at ceil(EPOCHS * t / final)
    expected = [math.ceil(EPOCHS * 0.5 / f - 1e-12) for f in base]
    assert by["base"].to_target.mean == pytest.approx(np.mean(expected)) and by["base"].reached == 6
    assert by["base"].convergence.mean == pytest.approx(
        np.mean([convergence_epoch([f * (e + 1) / EPOCHS for e in range(EPOCHS)]) for f in base])
    )


def test_target_baseline_is_the_baselines_mean_final_accuracy(store):
    fill(store, {"base": [0.6, 0.7], "fast": [0.9, 0.95]}, target="baseline")
    report = build_report(store, "syn")
    assert report.target == pytest.approx(0.65)
    fast = report.stats[1]
    assert fast.reached == 2
    assert fast.to_target.mean == pytest.approx(
        np.mean([math.ceil(EPOCHS * 0.65 / f) for f in (0.9, 0.95)])
    )


def test_written_report_and_plots(store, tmp_path):
    fill(store, {"base": [0.8, 0.82, 0.81], "other": [0.7, 0.71, 0.69]}, failed=[("other", 5)])
    report = build_report(store, "syn")
    out = tmp_path / "out"
    paths = write_report(report, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "lr_curves.png",
        "report.md",
        "val_acc.png",
    ]  # no temp files
    for key in ("lr_curves", "val_acc"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["report"].read_text()
    assert "| base |" in text and "| other |" in text and "baseline" in text
    assert "![Validation accuracy](val_acc.png)" in text
    assert "RuntimeError: out of memory" in text  # failed trials are listed
    other = report.stats[1]
    assert f"{100 * other.final_acc.mean:.2f} ± {100 * other.final_acc.std:.2f}" in text
    assert other.comparison.verdict in text
    # the same report twice is the same text
    assert markdown(build_report(store, "syn"), {"x": "y"}) == markdown(report, {"x": "y"})


def test_rich_table_has_a_row_per_schedule(store):
    from rich.console import Console

    fill(store, {"base": [0.8, 0.82], "other": [0.7, 0.71]})
    console = Console(width=200, record=True)
    console.print(rich_table(build_report(store, "syn")))
    text = console.export_text()
    assert "base" in text and "other" in text and "verdict" in text
