"""The report of a study: statistics per schedule, tests against the baseline, tables and plots.

Everything is read back from the results store (the study's resolved settings are stored with
it), so a report can be rebuilt at any time from the SQLite file alone.

Per schedule: n, mean +- std and a 95% confidence interval (Student t) of the best and the final
test accuracy, the convergence epoch (METHODS.md section 3), the epochs to reach the study's
target test accuracy, and the wall time. Each schedule's final test accuracy is tested against
the baseline's with Welch's t-test (Holm-corrected across schedules for the verdict) and, where
the same seeds finished under both, a paired t-test. A difference is called a win or a loss only
when the corrected Welch p-value is below 0.05; otherwise the report says "not significant".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrlab.atomic import atomic_save_figure, atomic_write_text
from lrlab.lab.contract import DEFAULT_OBJECTIVE, Objective, StoredTrial
from lrlab.lab.store import Store

ALPHA = 0.05


def epochs_to_target(acc: Sequence[float], target: float) -> int | None:
    """Number of epochs trained when ``acc`` (per epoch) first reaches ``target``; None if never."""
    for i, value in enumerate(acc):
        if value >= target:
            return i + 1
    return None


@dataclass
class Summary:
    """Mean, sample std and 95% t-interval of a set of numbers (NaN where undefined)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        from scipy import stats

        x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
        n = len(x)
        if n == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        mean = float(x.mean())
        if n == 1:
            return cls(1, mean, math.nan, math.nan, math.nan)
        std = float(x.std(ddof=1))
        half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * std / math.sqrt(n)
        return cls(n, mean, std, mean - half, mean + half)


@dataclass
class Comparison:
    """One schedule against the baseline, on final test accuracy."""

    delta: float  # mean difference (schedule - baseline)
    p_welch: float  # NaN when not testable
    p_welch_holm: float
    p_paired: float  # NaN when fewer than 2 matched seeds
    n_pairs: int
    verdict: str  # "better", "worse", "not significant", "n/a (...)"


@dataclass
class ScheduleStats:
    name: str
    n: int  # finished trials (done + diverged)
    diverged: int
    failed: int
    best_acc: Summary
    final_acc: Summary
    convergence: Summary
    to_target: Summary  # over the trials that reached the target
    reached: int
    wall_time: Summary
    comparison: Comparison | None = None  # None for the baseline itself


@dataclass
class Report:
    study: dict
    stats: list[ScheduleStats]
    target: float | None
    trials: list[StoredTrial] = field(repr=False, default_factory=list)

    @property
    def baseline(self) -> str:
        return self.study["baseline"]


# --------------------------------------------------------------------------------------------
# Statistics


def _p_value(result) -> float:
    p = float(result.pvalue)
    return p if math.isfinite(p) else math.nan


def compare_to_baseline(
    values: dict[int, float], base: dict[int, float]
) -> tuple[float, float, float, int]:
    """``(delta, p_welch, p_paired, n_pairs)`` for per-seed final accuracies of a schedule and the
    baseline. Samples with zero variance on both sides give p = 1 if the means are equal, and are
    left untested (NaN) otherwise."""
    from scipy import stats

    with warnings.catch_warnings():  # scipy warns on nearly constant samples; the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        return _compare(values, base, stats)


def _compare(values, base, stats):
    x = np.array([v for v in values.values() if math.isfinite(v)])
    y = np.array([v for v in base.values() if math.isfinite(v)])
    delta = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
    p_welch = math.nan
    if len(x) >= 2 and len(y) >= 2:
        if x.std() == 0 and y.std() == 0:
            p_welch = 1.0 if x.mean() == y.mean() else math.nan
        else:
            p_welch = _p_value(stats.ttest_ind(x, y, equal_var=False))
    seeds = sorted(
        s for s in values if s in base and math.isfinite(values[s]) and math.isfinite(base[s])
    )
    p_paired = math.nan
    if len(seeds) >= 2:
        d = np.array([values[s] - base[s] for s in seeds])
        if np.all(d == 0):
            p_paired = 1.0
        elif d.std() > 0:  # a constant non-zero difference has no t statistic
            p_paired = _p_value(
                stats.ttest_rel([values[s] for s in seeds], [base[s] for s in seeds])
            )
    return delta, p_welch, p_paired, len(seeds)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count)."""
    idx = [i for i, p in enumerate(pvalues) if math.isfinite(p)]
    m = len(idx)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def build_report(store: Store, study: str) -> Report:
    """Statistics of every schedule of ``study`` from what ``store`` holds (finished cells only)."""
    from lrlab.policies import convergence_epoch

    config = store.study_config(study)
    trials = store.study_trials(study)
    names = list(config["schedules"])
    by_name: dict[str, list[StoredTrial]] = {n: [] for n in names}
    for t in trials:
        by_name.setdefault(t.schedule, []).append(t)

    def finished(ts):
        return [t for t in ts if t.status in ("done", "diverged")]

    baseline = config["baseline"]
    objective = Objective(**config.get("objective", DEFAULT_OBJECTIVE.to_dict()))
    sign = 1.0 if objective.mode == "max" else -1.0  # targets are reached from below
    base_final = {t.seed: t.value(objective) for t in finished(by_name.get(baseline, []))}
    target = config.get("target", config.get("target_acc"))
    if target == "baseline":
        target = Summary.of(list(base_final.values())).mean
        target = None if not math.isfinite(target) else target

    stats_list = []
    for name in names:
        ts = by_name[name]
        fin = finished(ts)
        reached = []
        for t in fin:
            if target is not None:
                series = t.metrics.get(objective.name, [])
                e = epochs_to_target([sign * v for v in series], sign * target)
                if e is not None:
                    reached.append(e)
        stats_list.append(
            ScheduleStats(
                name=name,
                n=len(fin),
                diverged=sum(t.status == "diverged" for t in ts),
                failed=sum(t.status == "failed" for t in ts),
                best_acc=Summary.of([t.final.get("best_test_acc", math.nan) for t in fin]),
                final_acc=Summary.of([t.value(objective) for t in fin]),
                convergence=Summary.of(
                    [
                        convergence_epoch(t.metrics["val_acc"])
                        for t in fin
                        if t.metrics.get("val_acc")
                    ]
                ),
                to_target=Summary.of(reached),
                reached=len(reached),
                wall_time=Summary.of([t.wall_time for t in fin if t.wall_time is not None]),
            )
        )

    others = [s for s in stats_list if s.name != baseline]
    raw = []
    for s in others:
        finals = {t.seed: t.value(objective) for t in finished(by_name[s.name])}
        raw.append(compare_to_baseline(finals, base_final))
    adjusted = holm([r[1] for r in raw])
    for s, (delta, p_w, p_p, n_pairs), p_holm in zip(others, raw, adjusted):
        if not math.isfinite(p_w):
            verdict = (
                "n/a (needs >= 2 finished seeds on both sides)"
                if (s.n < 2 or len(base_final) < 2)
                else "n/a"
            )
        elif p_holm < ALPHA:
            verdict = "better" if objective.better(delta, 0.0) else "worse"
        else:
            verdict = "not significant"
        s.comparison = Comparison(delta, p_w, p_holm, p_p, n_pairs, verdict)
    return Report(study=config, stats=stats_list, target=target, trials=trials)


# --------------------------------------------------------------------------------------------
# Formatting


def _pct(x: float, digits: int = 2) -> str:
    return "—" if not math.isfinite(x) else f"{100 * x:.{digits}f}"


def _pm(s: Summary, scale: float = 100.0, digits: int = 2) -> str:
    if s.n == 0:
        return "—"
    if s.n == 1 or not math.isfinite(s.std):
        return f"{scale * s.mean:.{digits}f}"
    return f"{scale * s.mean:.{digits}f} ± {scale * s.std:.{digits}f}"


def _ci(s: Summary, scale: float = 100.0, digits: int = 2) -> str:
    if not math.isfinite(s.ci_low):
        return "—"
    return f"[{scale * s.ci_low:.{digits}f}, {scale * s.ci_high:.{digits}f}]"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return f"{p:.2g}" if p >= 0.001 else "<0.001"


def _target_cell(s: ScheduleStats) -> str:
    if s.reached == 0:
        return f"never (0/{s.n})"
    return f"{_pm(s.to_target, 1, 1)} ({s.reached}/{s.n})"


def _verdict(s: ScheduleStats, baseline: str) -> str:
    if s.comparison is None:
        return "baseline" if s.name == baseline else "—"
    return s.comparison.verdict


def table_rows(report: Report) -> list[dict[str, str]]:
    """The summary table, one dict (column -> text) per schedule, columns in display order.
    The markdown report shows every column, the terminal table a compact subset."""
    ipe = int(report.study.get("iterations_per_epoch", 1))
    rows = []
    for s in report.stats:
        n = f"{s.n}"
        if s.diverged:
            n += f" ({s.diverged} div.)"
        if s.failed:
            n += f" +{s.failed} failed"
        row = {
            "schedule": s.name,
            "n": n,
            "best test acc %": _pm(s.best_acc),
            "best 95% CI": _ci(s.best_acc),
            "final test acc %": _pm(s.final_acc),
            "final 95% CI": _ci(s.final_acc),
            "conv. epoch": _pm(s.convergence, 1, 1),
        }
        if report.target is not None:
            label = f"{100 * report.target:.2f}%"
            row[f"epochs to {label}"] = _target_cell(s)
            row[f"iterations to {label}"] = _pm(s.to_target, ipe, 0) if s.reached else "—"
        row["wall s"] = _pm(s.wall_time, 1, 1)
        c = s.comparison
        if c is None:
            row.update(
                {
                    "Δ final vs baseline": "—",
                    "p (Welch, Holm)": "—",
                    "p (paired)": "—",
                    "verdict": _verdict(s, report.baseline),
                }
            )
        else:
            sign = "+" if c.delta >= 0 else ""
            row["Δ final vs baseline"] = (
                "—" if not math.isfinite(c.delta) else f"{sign}{100 * c.delta:.2f}"
            )
            row["p (Welch, Holm)"] = _p(c.p_welch_holm)
            row["p (paired)"] = _p(c.p_paired)
            row["verdict"] = c.verdict
        rows.append(row)
    return rows


#: Columns of the terminal table and their short titles (the markdown report has every column).
TERMINAL_COLUMNS = {
    "schedule": "schedule",
    "n": "n",
    "best test acc %": "best %",
    "final test acc %": "final %",
    "final 95% CI": "final 95% CI",
    "conv. epoch": "conv. ep",
    "epochs to": "ep to",
    "wall s": "wall s",
    "Δ final vs baseline": "Δ vs base",
    "p (Welch, Holm)": "p Welch",
    "p (paired)": "p paired",
    "verdict": "verdict",
}


def rich_table(report: Report):
    """The summary as a compact :class:`rich.table.Table`."""
    from rich.table import Table

    rows = table_rows(report)
    table = Table(title=f"lrlab compare: {report.study['name']} (baseline: {report.baseline})")
    columns = []
    for column in rows[0] if rows else TERMINAL_COLUMNS:
        prefix = next((p for p in TERMINAL_COLUMNS if column.startswith(p)), None)
        if prefix is None:
            continue
        columns.append(column)
        title = TERMINAL_COLUMNS[prefix] + column[len(prefix) :]
        table.add_column(
            title, justify="left" if column in ("schedule", "verdict") else "right", no_wrap=True
        )
    styles = {"better": "green", "worse": "red"}
    for row in rows:
        table.add_row(*(row[c] for c in columns), style=styles.get(row["verdict"]))
    return table


def markdown(report: Report, images: dict[str, str] | None = None) -> str:
    """The report as markdown; ``images`` maps a caption to a (relative) PNG path."""
    st = report.study
    rows = table_rows(report)
    header = list(rows[0]) if rows else []
    lines = [f"# lrlab compare: `{st['name']}`", ""]
    if st.get("description"):
        lines += [st["description"], ""]
    opt = ", ".join(f"{k}={v}" for k, v in st["optimizer"].items())
    lines += [
        f"- task: `{st['task']}`, model: `{st['model']}`, {st['epochs']} epochs, batch size "
        f"{st['batch_size']} ({st['iterations_per_epoch']} iterations per epoch), LR stepped every "
        f"{'iteration' if st['lr_interval'] == 'step' else 'epoch'}",
        f"- optimizer: {opt}",
        f"- seeds: {', '.join(map(str, st['seeds']))}; baseline: `{report.baseline}`",
    ]
    if report.target is not None:
        how = (
            " (the baseline's mean final test accuracy)"
            if st.get("target_acc") == "baseline"
            else ""
        )
        lines.append(f"- target test accuracy: {100 * report.target:.2f}%{how}")
    lines += ["", "## Results", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append(
        "|" + "|".join("---" if h in ("schedule", "verdict") else "---:" for h in header) + "|"
    )
    lines += ["| " + " | ".join(r.values()) + " |" for r in rows]
    lines += [
        "",
        "Accuracies are test accuracies in percent, mean ± sample std over seeds, with the 95% "
        "confidence interval of the mean (Student t). *best*: test accuracy at the epoch of lowest "
        "validation loss (the kept checkpoint); *final*: after the last epoch. *conv. epoch*: the "
        "first 0-based epoch from which the next 4 changes of validation accuracy sum to less "
        "than 0.009 (METHODS.md section 3; the run's length if never)."
        + (
            " *epochs to X%*: epochs trained when the test accuracy first reached the target, "
            "mean over the trials that reached it (how many in brackets); *iterations*: the same "
            "in optimizer iterations."
            if report.target is not None
            else ""
        )
        + " *Δ final*: difference of mean final test accuracy to the baseline, in points. "
        "*p (Welch, Holm)*: Welch's t-test of final test accuracy against the baseline, "
        "Holm-corrected over the schedules compared; *p (paired)*: paired t-test over the seeds "
        "both finished (uncorrected). The verdict is *better* / *worse* only when the corrected "
        f"Welch p-value is below {ALPHA}; otherwise *not significant*: with this many seeds, the "
        "difference may be noise.",
        "",
    ]
    failed = [t for t in report.trials if t.status == "failed"]
    if failed:
        lines += ["## Failed trials", ""]
        lines += [f"- `{t.schedule}` seed {t.seed}: {t.error}" for t in failed]
        lines.append("")
    for caption, path in (images or {}).items():
        lines += [f"## {caption}", "", f"![{caption}]({path})", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Plots


def _schedule_curve(entry: dict, epochs: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(epoch_axis, lr)`` of a closed-form schedule; None for a metric-driven policy."""
    from lrlab import from_config
    from lrlab.schedules import Schedule

    try:
        obj = from_config(entry["resolved"])
    except Exception:  # a config this lrlab cannot build any more: fall back to recorded LRs
        return None
    if not isinstance(obj, Schedule):
        return None
    spe = int(entry["steps_per_epoch"])
    steps = epochs * spe
    t = np.arange(steps + 1, dtype=np.float64)
    return t / spe, obj.values(t)


def plot_lr_curves(report: Report, path: str | Path) -> None:
    """One panel per schedule: the closed-form LR curve (first seed), or, for a policy, the LR
    recorded each epoch of every seed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = [s.name for s in report.stats]
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 2.8 * nrows), squeeze=False, sharex=True
    )
    epochs = int(report.study["epochs"])
    for ax, name in zip(axes.flat, names):
        entry = report.study["schedules"][name]
        curve = _schedule_curve(entry, epochs)
        if curve is not None:
            per_epoch = int(entry["steps_per_epoch"]) == 1  # the LR changes only between epochs
            ax.plot(
                curve[0],
                curve[1],
                lw=1.0,
                color="C0",
                drawstyle="steps-post" if per_epoch else "default",
            )
            ax.set_title(name, fontsize=10)
        else:
            for t in report.trials:
                if t.schedule == name and t.metrics.get("lr"):
                    # epoch e (from 1) ran from e - 1 to e at (mean) learning rate lr[e]
                    x = np.asarray(t.epochs, dtype=float)
                    lr = np.asarray(t.metrics["lr"], dtype=float)
                    ax.step(
                        np.append(x - 1, x[-1]),
                        np.append(lr, lr[-1]),
                        where="post",
                        lw=0.9,
                        alpha=0.8,
                    )
            ax.set_title(f"{name} (recorded per epoch, each seed)", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for row in axes:
        row[0].set_ylabel("learning rate")
    fig.suptitle(f"Learning-rate schedules: {report.study['name']}")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def plot_val_acc(report: Report, path: str | Path) -> None:
    """Validation accuracy per epoch: mean over seeds with a ±1 std band, one colour per schedule."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, s in enumerate(report.stats):
        runs = [
            t.metrics["val_acc"]
            for t in report.trials
            if t.schedule == s.name
            and t.status in ("done", "diverged")
            and t.metrics.get("val_acc")
        ]
        if not runs:
            continue
        length = min(len(r) for r in runs)
        acc = 100 * np.array([r[:length] for r in runs], dtype=np.float64)
        mean = np.nanmean(acc, axis=0)
        std = np.nanstd(acc, axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
        x = np.arange(1, length + 1)
        color = f"C{i % 10}"
        style = "--" if s.name == report.baseline else "-"
        ax.plot(x, mean, style, color=color, lw=1.4, label=f"{s.name} (n={len(runs)})")
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy %")
    ax.set_title(f"Validation accuracy (mean ± std over seeds): {report.study['name']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Atomic writing


def _save_figure(fig: Any, path: str | Path) -> None:
    atomic_save_figure(fig, path)


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``lr_curves.png`` and ``val_acc.png`` into ``out_dir`` (each atomically:
    a temp file then ``os.replace``). Returns their paths by kind."""
    out = Path(out_dir)
    paths = {
        "report": out / "report.md",
        "lr_curves": out / "lr_curves.png",
        "val_acc": out / "val_acc.png",
    }
    plot_lr_curves(report, paths["lr_curves"])
    plot_val_acc(report, paths["val_acc"])
    text = markdown(
        report,
        {
            "Learning-rate schedules": paths["lr_curves"].name,
            "Validation accuracy": paths["val_acc"].name,
        },
    )
    atomic_write_text(paths["report"], text)
    return paths
