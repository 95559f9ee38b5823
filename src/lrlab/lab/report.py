"""The report of a study: per-schedule statistics assembled from the store, and their
presentation (markdown, terminal table, ``summary.csv``, ``summary.json``; plots in
:mod:`lrlab.lab.plots`). The numbers come from :mod:`lrlab.lab.stats`.

Everything is read back from the results store, so a report can be rebuilt at any time from the
SQLite file alone. The study's *objective* (a metric name and a direction, ``min`` or ``max``)
is what the statistics, verdicts, convergence epoch and target use; every other metric the
trials report is tabulated too. Per schedule:

- finished trials ``n`` (done + diverged) and the divergence rate. A diverged trial stopped on a
  non-finite value: it is counted, but kept out of the objective's statistics, the targets and
  the comparisons (its last values are those of a broken run, not a measurement of the
  schedule). Failed trials (the trial raised) are counted and their errors listed;
- the objective over the done trials: mean ± sample std, the BCa bootstrap 95% interval of the
  mean (within the metric's bounds) and the Student-t interval;
- against the baseline: the difference of means, Welch's t-test Holm-corrected across schedules
  (the verdict), the paired t-test over seeds both ran, the probability of beating the baseline
  on a paired seed and Hedges' g;
- convergence epoch of the objective's series ("never" when it does not converge), epochs to the
  study's target, wall time.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lrlab.atomic import atomic_write_text
from lrlab.lab import stats as st
from lrlab.lab.contract import DEFAULT_OBJECTIVE, FINISHED, Objective, StoredTrial, TrialStatus
from lrlab.lab.stats import ALPHA, Proportion, Summary

if TYPE_CHECKING:
    from lrlab.lab.sequential import DecisionReport

#: The built-in trainer's objective (what the report judged before objectives were generic).
#: Series that describe how a run was driven, not how well it did: not tabulated as metrics.
RUN_SERIES = frozenset({"lr", "lr_min", "lr_max", "seconds"})
#: Clear names for the built-in trainer's final metrics.
METRIC_LABELS = {
    "best_test_acc": "test acc at lowest val loss",
    "best_epoch": "epoch of lowest val loss",
}


# --------------------------------------------------------------------------------------------
# The store, in the data contract's shape (the one place that knows today's store layout)


def _study_from_store(store: Any, study: str) -> dict:
    """The study config with the contract's ``objective`` and ``target`` keys filled in."""
    config = dict(store.study_config(study))
    config.setdefault("objective", {"name": DEFAULT_OBJECTIVE.name, "mode": DEFAULT_OBJECTIVE.mode})
    if "target" not in config and config.get("target_acc") is not None:
        config["target"] = config["target_acc"]
    return config


# --------------------------------------------------------------------------------------------
# Statistics per schedule


@dataclass
class Comparison:
    """One schedule against the baseline, on the objective."""

    delta: float  # difference of means, schedule - baseline, objective units
    p_welch: float  # NaN when not testable
    p_welch_holm: float
    p_paired: float  # NaN with fewer than 2 matched seeds
    n_pairs: int
    verdict: str  # "better", "worse", "not significant[ after Holm ...]", "n/a (...)"
    beats: Proportion = field(default_factory=lambda: st.wilson(0, 0))
    hedges_g: float = math.nan  # unpaired, pooled sd
    hedges_gz: float = math.nan  # paired differences


@dataclass
class ScheduleStats:
    name: str
    n: int  # finished trials (done + diverged)
    diverged: int
    failed: int
    objective: Summary  # over the done trials
    bootstrap: tuple[float, float]  # BCa 95% interval of the objective's mean
    values: dict[int, float]  # seed -> objective value (done trials)
    metrics: dict[str, Summary]  # every other metric's final value
    convergence: Summary  # over the trials that converged
    converged: int
    to_target: Summary  # over the trials that reached the target
    reached: int
    wall_time: Summary
    comparison: Comparison | None = None  # None for the baseline itself

    @property
    def divergence_rate(self) -> float:
        return self.diverged / self.n if self.n else math.nan


@dataclass
class Report:
    study: dict
    objective: Objective
    stats: list[ScheduleStats]
    target: float | None
    trials: list[StoredTrial] = field(repr=False, default_factory=list)

    @property
    def baseline(self) -> str:
        return self.study["baseline"]


def _done(trials: list[StoredTrial]) -> list[StoredTrial]:
    return [t for t in trials if t.status == TrialStatus.DONE]


def _metric_names(trials: list[StoredTrial], objective: Objective) -> list[str]:
    names: dict[str, None] = {}
    for t in trials:
        names.update(dict.fromkeys(t.final))
        names.update(dict.fromkeys(t.metrics))
    return [n for n in names if n != objective.name and n not in RUN_SERIES]


def _target(config: dict, base_values: list[float]) -> float | None:
    target = config.get("target")
    if target == "baseline":
        mean = Summary.of(base_values).mean
        return mean if math.isfinite(mean) else None
    return None if target is None else float(target)


def _schedule_stats(name: str, trials: list[StoredTrial], report: Report) -> ScheduleStats:
    obj = report.objective
    done = _done(trials)
    values = {t.seed: t.value(obj) for t in done}
    series = [t.metrics.get(obj.name, []) for t in done]
    conv = [e for e in (st.converged_epoch(s) for s in series if s) if e is not None]
    reached = []
    if report.target is not None:
        hits = (
            st.epochs_to_target(t.metrics.get(obj.name, []), report.target, obj.mode, t.epochs)
            for t in done
        )
        reached = [e for e in hits if e is not None]
    names = _metric_names(report.trials, obj)
    return ScheduleStats(
        name=name,
        n=sum(t.status in FINISHED for t in trials),
        diverged=sum(t.status == TrialStatus.DIVERGED for t in trials),
        failed=sum(t.status == TrialStatus.FAILED for t in trials),
        objective=Summary.of(list(values.values())),
        bootstrap=st.bootstrap_ci(list(values.values())),
        values=values,
        metrics={m: Summary.of([t.value(Objective(m, "max")) for t in done]) for m in names},
        convergence=Summary.of(conv),
        converged=len(conv),
        to_target=Summary.of(reached),
        reached=len(reached),
        wall_time=Summary.of([t.wall_time for t in done]),
    )


def _compare(s: ScheduleStats, base: ScheduleStats, mode: str) -> Comparison:
    delta, p_w, p_p, n_pairs = st.compare_to_baseline(s.values, base.values)
    matched = st.pairs(s.values, base.values)
    return Comparison(
        delta=delta,
        p_welch=p_w,
        p_welch_holm=math.nan,
        p_paired=p_p,
        n_pairs=n_pairs,
        verdict="",
        beats=st.p_beats(matched, mode),
        hedges_g=st.hedges_g(list(s.values.values()), list(base.values.values())),
        hedges_gz=st.hedges_gz([a - b for a, b in matched]),
    )


def _judge(comparisons: list[tuple[ScheduleStats, Comparison]], base: ScheduleStats, mode: str):
    adjusted = st.holm([c.p_welch for _, c in comparisons])
    for (s, c), p_holm in zip(comparisons, adjusted):
        c.p_welch_holm = p_holm
        c.verdict = st.verdict(c.delta, c.p_welch, p_holm, mode)
        if c.verdict == "n/a" and (s.objective.n < 2 or base.objective.n < 2):
            c.verdict = "n/a (needs >= 2 done seeds on both sides)"
        s.comparison = c


def build_report(store: Any, study: str) -> Report:
    """Statistics of every schedule of ``study`` from what ``store`` holds (finished cells and
    failed ones; unfinished cells are not in the store)."""
    config = _study_from_store(store, study)
    trials = store.study_trials(study)
    objective = Objective(config["objective"]["name"], config["objective"]["mode"])
    by_name: dict[str, list[StoredTrial]] = {n: [] for n in config["schedules"]}
    for t in trials:
        by_name.setdefault(t.schedule, []).append(t)
    base_values = [t.value(objective) for t in _done(by_name.get(config["baseline"], []))]
    report = Report(config, objective, [], _target(config, base_values), trials)
    report.stats = [_schedule_stats(n, ts, report) for n, ts in by_name.items()]
    base = next(s for s in report.stats if s.name == report.baseline)
    others = [s for s in report.stats if s is not base]
    _judge([(s, _compare(s, base, objective.mode)) for s in others], base, objective.mode)
    return report


# --------------------------------------------------------------------------------------------
# Numbers as text


def is_fraction_metric(name: str) -> bool:
    """Accuracies are fractions in [0, 1], shown in percent."""
    return name.endswith(("acc", "accuracy"))


def metric_label(name: str) -> str:
    label = METRIC_LABELS.get(name, name)
    return f"{label} %" if is_fraction_metric(name) else label


def _num(x: float, name: str) -> str:
    if not math.isfinite(x):
        return "—"
    return f"{100 * x:.2f}" if is_fraction_metric(name) else f"{x:.4g}"


def _pm(s: Summary, name: str) -> str:
    if s.n == 0:
        return "—"
    if not math.isfinite(s.std):
        return _num(s.mean, name)
    spread = _num(s.std, name) if is_fraction_metric(name) else f"{s.std:.2g}"
    return f"{_num(s.mean, name)} ± {spread}"


def _value(x: float, name: str) -> str:
    """A value with its unit: "90.00%" for an accuracy."""
    return _num(x, name) + ("%" if is_fraction_metric(name) and math.isfinite(x) else "")


def _interval(low: float, high: float, name: str) -> str:
    if not math.isfinite(low):
        return "—"
    return f"[{_num(low, name)}, {_num(high, name)}]"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return f"{p:.2g}" if p >= 0.001 else "<0.001"


def _delta(c: Comparison, name: str) -> str:
    if not math.isfinite(c.delta):
        return "—"
    return ("+" if c.delta >= 0 else "") + _num(c.delta, name)


def _beats(b: Proportion) -> str:
    if b.n == 0:
        return "—"
    return f"{100 * b.estimate:.0f}% [{100 * b.low:.0f}, {100 * b.high:.0f}]"


def _mean_std(summary: Summary, digits: int = 1, scale: float = 1.0) -> str:
    if summary.n == 0:
        return "—"
    text = f"{scale * summary.mean:.{digits}f}"
    if math.isfinite(summary.std):
        text += f" ± {scale * summary.std:.{digits}f}"
    return text


def _count_of(count: int, total: int, summary: Summary, digits: int = 1, scale: float = 1.0) -> str:
    """ "mean ± std (count/total)" of the trials that got there, "never (0/total)" if none did."""
    if count == 0:
        return f"never (0/{total})" if total else "—"
    return f"{_mean_std(summary, digits, scale)} ({count}/{total})"


def _n_cell(s: ScheduleStats) -> str:
    text = f"{s.n}"
    if s.diverged:
        text += f" ({s.diverged} div.)"
    if s.failed:
        text += f" +{s.failed} failed"
    return text


# --------------------------------------------------------------------------------------------
# The summary table


@dataclass(frozen=True)
class Column:
    """A column of the summary table: its markdown title, its terminal title (None: markdown
    only) and its priority on a narrow terminal (lower stays longer)."""

    key: str
    title: str
    short: str | None
    priority: int


def _direction(objective: Objective) -> str:
    return "lower is better" if objective.mode == "min" else "higher is better"


def columns(report: Report) -> list[Column]:
    """The summary table's columns, in display order."""
    obj = report.objective
    label = metric_label(obj.name)
    cols = [
        Column("schedule", "schedule", "schedule", 0),
        Column("n", "n (div., failed)", "n", 1),
        Column(
            "objective", f"{label} (mean ± std; {_direction(obj)})", f"{label}\n({obj.mode})", 0
        ),
        Column("ci", "95% CI (bootstrap)", "95% CI\n(bootstr.)", 4),
        Column("ci_t", "95% CI (t)", None, 99),
        Column("divergence", "diverged", None, 99),  # the terminal's n says it
        Column("delta", "Δ vs baseline", "Δ vs\nbase", 2),
        Column("p_holm", "p (Welch, Holm)", "p Welch\n(Holm)", 3),
        Column("p_paired", "p (paired)", "p\npaired", 6),
        Column("beats", "P(beats baseline) [95% CI]", "P(beats\nbase)", 5),
        Column("g", "Hedges' g", "g", 9),
        Column("conv", f"convergence epoch of {obj.name}", "conv.\nepoch", 7),
    ]
    if report.target is not None:
        t = _value(report.target, obj.name)
        cols += [
            Column("to_target", f"epochs to {t}", f"epochs\nto {t}", 8),
            Column("iters_to_target", f"iterations to {t}", None, 99),
        ]
    return cols + [
        Column("wall", "wall s", "wall s", 10),
        Column("verdict", "verdict", "verdict", 0),
    ]


def _comparison_cells(c: Comparison | None, name: str, baseline: bool) -> dict[str, str]:
    if c is None:
        keys = ("delta", "p_holm", "p_paired", "beats", "g")
        return {k: "—" for k in keys} | {"verdict": "baseline" if baseline else "—"}
    return {
        "delta": _delta(c, name),
        "p_holm": _p(c.p_welch_holm),
        "p_paired": _p(c.p_paired),
        "beats": _beats(c.beats),
        "g": "—" if not math.isfinite(c.hedges_g) else f"{c.hedges_g:+.2f}",
        "verdict": c.verdict,
    }


def table_rows(report: Report) -> list[dict[str, str]]:
    """The summary table, one dict (column key -> text) per schedule."""
    name = report.objective.name
    ipe = int(report.study.get("iterations_per_epoch", 1))
    rows = []
    for s in report.stats:
        done = s.n - s.diverged
        row = {
            "schedule": s.name,
            "n": _n_cell(s),
            "objective": _pm(s.objective, name),
            "ci": _interval(*s.bootstrap, name),
            "ci_t": _interval(s.objective.ci_low, s.objective.ci_high, name),
            "divergence": "—" if not s.n else f"{100 * s.divergence_rate:.0f}%",
            "conv": _count_of(s.converged, done, s.convergence),
            "to_target": _count_of(s.reached, done, s.to_target),
            "iters_to_target": _count_of(s.reached, done, s.to_target, 0, ipe),
            "wall": _mean_std(s.wall_time),
        }
        row.update(_comparison_cells(s.comparison, name, s.name == report.baseline))
        rows.append(row)
    return rows


def _short_verdict(text: str) -> str:
    """The verdict for the terminal, stacked on two lines where it is long."""
    if text.startswith("not significant after Holm"):
        return "n.s. after Holm\n(raw p " + text.rsplit("= ", 1)[-1]
    if text.startswith("n/a"):
        return "n/a"
    return {"not significant": "n.s."}.get(text, text)


def _fit(cols: list[Column], widths: dict[str, int], width: int) -> list[Column]:
    """The columns that fit in ``width`` terminal cells, by priority, in display order."""
    kept: set[str] = set()
    used = 1  # the left edge; each column adds its padding (2) and a border (1)
    for col in sorted(cols, key=lambda c: c.priority):
        if used + widths[col.key] + 3 <= width or col.priority == 0:
            kept.add(col.key)
            used += widths[col.key] + 3
    return [c for c in cols if c.key in kept]


#: Where the terminal table stacks a cell on two lines (the text before and after the mark).
_STACK_AT = {
    "n": (" +", " ("),
    "beats": (" [",),
    "conv": (" (",),
    "to_target": (" (",),
    "wall": (" ± ",),
}


#: More cells stacked, for terminals where even the stacked table does not fit.
_STACK_MORE = _STACK_AT | {"objective": (" ± ",), "ci": (", ",), "verdict": (" (",)}


def _stack(text: str, marks: tuple[str, ...]) -> str:
    """``text`` on two lines at the first of ``marks`` it holds: "4.2 ± 0.4 (5/5)" at " ("
    becomes "4.2 ± 0.4" over "(5/5)"; a comma stays with the first line."""
    for mark in marks:
        if mark in text:
            head, tail = text.split(mark, 1)
            if mark.startswith(","):
                return f"{head},\n{tail}"
            return f"{head}\n{mark.lstrip()}{tail}"
    return text


def terminal_rows(report: Report, stacking: int = 1) -> list[dict[str, str]]:
    """The table's cells for the terminal: short verdicts; with ``stacking`` 1, some cells on
    two lines, with 2 more of them."""
    marks = {0: {}, 1: _STACK_AT, 2: _STACK_MORE}[stacking]
    rows = []
    for r in table_rows(report):
        row = r | {"verdict": _short_verdict(r["verdict"])}
        rows.append(
            {k: _stack(v, marks[k]) if k in marks and "\n" not in v else v for k, v in row.items()}
        )
    return rows


def _layout(
    cols: list[Column], variants: list[list[dict[str, str]]], width: int
) -> tuple[list[Column], list[dict[str, str]]]:
    """The columns that fit ``width`` and the rows to show them with: of the variants of the
    rows (one line per row, then more and more stacked), the first that shows the most columns."""
    from rich.cells import cell_len

    def span(text: str) -> int:
        return max(cell_len(line) for line in text.split("\n"))

    best: tuple[list[Column], list[dict[str, str]]] = ([], variants[0])
    for rows in variants:
        widths = {c.key: max([span(c.short or "")] + [span(r[c.key]) for r in rows]) for c in cols}
        kept = _fit(cols, widths, width)
        if len(kept) > len(best[0]):
            best = (kept, rows)
    return best


def terminal_layout(report: Report, width: int) -> tuple[list[Column], list[dict[str, str]]]:
    """The columns the terminal table shows at ``width`` columns and their cells: one line per
    schedule if every column fits so, else more and more cells stacked on two lines."""
    cols = [c for c in columns(report) if c.short is not None]
    return _layout(cols, [terminal_rows(report, k) for k in (0, 1, 2)], width)


def _rich(
    title: str, cols: list[Column], kept: list[Column], rows: list[dict[str, str]], width: int
):
    from rich.table import Table

    left = [c.short.replace("\n", " ") for c in cols if c.short and c not in kept]
    caption = f"not shown at {width} columns: {', '.join(left)} (see report.md)" if left else None
    table = Table(title=title, caption=caption)
    for c in kept:
        text = c.key in ("schedule", "verdict", "reason")
        justify: Literal["left", "right"] = "left" if text else "right"
        # names may fold if nothing else fits; numbers never wrap (their column fits)
        table.add_column(
            c.short or "", justify=justify, no_wrap=c.key != "schedule", overflow="fold"
        )
    styles = {"better": "green", "worse": "red"}
    for row in rows:
        table.add_row(*(row[c.key] for c in kept), style=styles.get(row.get("verdict", "")))
    return table


def _table(report: Report, width: int):
    kept, rows = terminal_layout(report, width)
    title = f"lrlab compare: {report.study['name']} (baseline: {report.baseline})"
    return _rich(title, columns(report), kept, rows, width)


class _Fitted:
    """A renderable that builds its table for the width of the console it is printed on (a
    terminal's width, or rich's 80 columns for a pipe)."""

    def __init__(self, build, subject):
        self.build, self.subject = build, subject

    def __rich_console__(self, console, options):
        yield self.build(self.subject, options.max_width)


def rich_table(report: Report, width: int | None = None):
    """The summary for a terminal of ``width`` columns (default: the console's width when
    printed). Columns are dropped by priority where they do not fit; no number is ever cut."""
    return _Fitted(_table, report) if width is None else _table(report, width)


# --------------------------------------------------------------------------------------------
# Seeds until decided


def decision_columns(decision: DecisionReport) -> list[Column]:
    unit = " (points)" if is_fraction_metric(decision.objective.name) else ""
    level = f"{100 * (1 - decision.alpha / max(1, len(decision.decisions))):.4g}%"
    return [
        Column("schedule", "schedule", "schedule", 0),
        Column("seeds", "seeds", "seeds", 0),
        Column("pairs", "pairs with the baseline", "pairs", 5),
        Column("delta", f"Δ mean{unit}", "Δ", 1),
        Column("interval", f"{level} confidence sequence of Δ", "interval", 2),
        Column("width", "interval width", "width", 3),
        Column("p", "p (anytime)", "p", 6),
        Column("p_holm", "p (anytime, Holm)", "p Holm", 4),
        Column("verdict", "verdict", "verdict", 0),
        Column("reason", "stopped because", "stopped", 0),
    ]


def decision_rows(decision: DecisionReport) -> list[dict[str, str]]:
    name = decision.objective.name
    rows = []
    for d in decision.decisions:
        delta = (
            "—"
            if not math.isfinite(d.mean_diff)
            else ("+" if d.mean_diff >= 0 else "") + _num(d.mean_diff, name)
        )
        low = "-∞" if math.isinf(d.cs_low) else _num(d.cs_low, name)
        high = "∞" if math.isinf(d.cs_high) else _num(d.cs_high, name)
        rows.append(
            {
                "schedule": d.schedule,
                "seeds": str(d.seeds),
                "pairs": str(d.pairs),
                "delta": delta,
                "interval": f"[{low}, {high}]",
                "width": "∞" if math.isinf(d.width) else _num(d.width, name),
                "p": _p(d.p_anytime),
                "p_holm": _p(d.p_holm),
                "verdict": d.verdict.value,
                "reason": "—" if d.reason is None else d.reason.value,
            }
        )
    return rows


def _decision_table(decision: DecisionReport, width: int):
    cols = decision_columns(decision)
    rows = decision_rows(decision)
    stacked = [
        {k: v.replace(", ", ",\n") if k == "interval" else v for k, v in r.items()} for r in rows
    ]
    kept, shown = _layout(cols, [rows, stacked], width)
    base = f"baseline {decision.baseline}: {decision.baseline_seeds} seeds"
    title = f"seeds until decided: {decision.study} ({base})"
    return _rich(title, cols, kept, shown, width)


def rich_decision_table(decision: DecisionReport, width: int | None = None):
    """Seeds per schedule, interval, verdict and why it stopped, fitted to the terminal."""
    return _Fitted(_decision_table, decision) if width is None else _decision_table(decision, width)


def decision_markdown(decision: DecisionReport) -> list[str]:
    cols = decision_columns(decision)
    margin = "none" if decision.margin is None else _num(decision.margin, decision.objective.name)
    return [
        "## Seeds until decided",
        "",
        f"{decision.rounds} rounds, {decision.seconds:.0f} s; stopped: {decision.stopped.value}; "
        f"baseline `{decision.baseline}`: {decision.baseline_seeds} seeds; equivalence margin: "
        f"{margin}; family-wise level {decision.alpha}.",
        "",
        *_md_table(
            [c.title for c in cols], [[r[c.key] for c in cols] for r in decision_rows(decision)]
        ),
        "",
        "Anytime-valid paired t-test on the per-seed differences (schedule − baseline): its "
        "p-values and intervals stay valid although the number of seeds depended on the results "
        "(docs/statistics.md). *better* / *worse*: Holm-corrected anytime p below the level; "
        "*equivalent*: the interval lies within ± the margin; *undecided*: neither, when the "
        "schedule reached the most seeds allowed or the time budget ran out.",
        "",
    ]


def decision_dict(decision: DecisionReport) -> dict:
    return {
        "rounds": decision.rounds,
        "seconds": decision.seconds,
        "stopped": decision.stopped.value,
        "alpha": decision.alpha,
        "margin": decision.margin,
        "baseline_seeds": decision.baseline_seeds,
        "schedules": [
            {
                "schedule": d.schedule,
                "seeds": d.seeds,
                "pairs": d.pairs,
                "mean_diff": d.mean_diff,
                "interval": [d.cs_low, d.cs_high],
                "width": d.width,
                "p_anytime": d.p_anytime,
                "p_holm": d.p_holm,
                "verdict": d.verdict.value,
                "stopped": None if d.reason is None else d.reason.value,
            }
            for d in decision.decisions
        ],
    }


# --------------------------------------------------------------------------------------------
# Markdown


def _md_table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("\n", " ") for c in cells) + " |"

    rule = "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|"
    return [line(header), rule] + [line(r) for r in rows]


def _settings_lines(report: Report) -> list[str]:
    st_ = report.study
    obj = report.objective
    lines = [
        f"- objective: `{obj.name}` ({obj.mode}: {_direction(obj)}); baseline: `{report.baseline}`"
    ]
    if "task" in st_:
        lines.append(
            f"- task: `{st_['task']}`, model: `{st_.get('model')}`, {st_.get('epochs')} epochs, "
            f"batch size {st_.get('batch_size')} ({st_.get('iterations_per_epoch')} iterations "
            f"per epoch), LR stepped every "
            f"{'iteration' if st_.get('lr_interval') == 'step' else 'epoch'}"
        )
    if st_.get("optimizer"):
        lines.append("- optimizer: " + ", ".join(f"{k}={v}" for k, v in st_["optimizer"].items()))
    lines.append(f"- seeds: {', '.join(map(str, st_.get('seeds', [])))}")
    driven = [
        f"`{name}`: " + ", ".join(f"{k} `{json.dumps(c, sort_keys=True)}`" for k, c in hp.items())
        for name, entry in st_.get("schedules", {}).items()
        if (hp := entry.get("resolved_hyperparams"))
    ]
    if driven:  # the studies that schedule optimizer hyper-parameters besides the rate
        lines.append("- scheduled hyper-parameters: " + "; ".join(driven))
    if report.target is not None:
        how = f" (the baseline's mean {obj.name})" if st_.get("target") == "baseline" else ""
        lines.append(f"- target {obj.name}: {_value(report.target, obj.name)}{how}")
    return lines


def _legend(report: Report) -> str:
    obj = report.objective
    unit = "in percent" if is_fraction_metric(obj.name) else "in its own units"
    text = (
        f"`{obj.name}` {unit}: mean ± sample std over the done seeds; *95% CI (bootstrap)*: BCa "
        "bootstrap interval of the mean (never beyond the values seen, so within the metric's "
        "bounds; too narrow with few seeds); *95% CI (t)*: Student-t interval. Diverged trials "
        "are counted in *n* and *diverged* and left out of every other column. *Δ*: difference of "
        "means, schedule − baseline. *p (Welch, Holm)*: Welch's t-test against the baseline, "
        "Holm-corrected over the schedules compared; *p (paired)*: paired t-test over the seeds "
        "both ran (uncorrected). *P(beats baseline)*: share of the paired seeds on which the "
        "schedule did better (ties count one half), Wilson 95% interval. *Hedges' g*: the "
        f"difference in pooled standard deviations. *convergence epoch*: first 0-based epoch from "
        f"which the next 4 changes of `{obj.name}` sum to less than 0.009 (METHODS.md section 3), "
        "mean over the trials that converged, how many in brackets; *never* if none did."
    )
    if report.target is not None:
        text += " *epochs to X*: first epoch at the target or better, over the trials reaching it."
    return text + (
        f" The verdict is *better* / *worse* ({_direction(obj)}) only when the Holm-corrected "
        f"p-value is below {ALPHA}; where only the correction made a difference not significant, "
        "the verdict says so and gives the uncorrected p."
    )


def _metrics_table(report: Report) -> list[str]:
    names = list(dict.fromkeys(m for s in report.stats for m in s.metrics))
    if not names:
        return []
    rows = [
        [s.name] + [_pm(s.metrics[m], m) if m in s.metrics else "—" for m in names]
        for s in report.stats
    ]
    return [
        "## Other metrics",
        "",
        "Final value of every other metric the trials report (mean ± std over the done seeds; the "
        "last finite value of a per-epoch series).",
        "",
        *_md_table(["schedule"] + [metric_label(m) for m in names], rows),
        "",
    ]


def _failures(report: Report) -> list[str]:
    failed = [t for t in report.trials if t.status == TrialStatus.FAILED]
    diverged = [s for s in report.stats if s.diverged]
    lines = []
    if diverged:
        lines += ["## Divergence", ""]
        lines += [
            f"- `{s.name}`: {s.diverged} of {s.n} diverged ({100 * s.divergence_rate:.0f}%)"
            for s in diverged
        ]
        lines.append("")
    if failed:
        lines += ["## Failed trials", ""]
        lines += [f"- `{t.schedule}` seed {t.seed}: {t.error}" for t in failed]
        lines.append("")
    return lines


def markdown(
    report: Report, images: dict[str, str] | None = None, decision: DecisionReport | None = None
) -> str:
    """The report as markdown; ``images`` maps a caption to a (relative) PNG path; ``decision``
    (from :func:`lrlab.lab.sequential.run_until_decided`) adds how the seeds were chosen."""
    cols = columns(report)
    rows = table_rows(report)
    lines = [f"# lrlab compare: `{report.study['name']}`", ""]
    if report.study.get("description"):
        lines += [report.study["description"], ""]
    lines += _settings_lines(report) + ["", "## Results", ""]
    lines += _md_table([c.title for c in cols], [[r[c.key] for c in cols] for r in rows])
    lines += ["", _legend(report), ""]
    lines += decision_markdown(decision) if decision is not None else []
    lines += _metrics_table(report) + _failures(report)
    for caption, path in (images or {}).items():
        lines += [f"## {caption}", "", f"![{caption}]({path})", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# summary.csv and summary.json


def _clean(x: Any) -> Any:
    """JSON has no NaN: undefined numbers become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _summary_dict(s: Summary) -> dict:
    return {"n": s.n, "mean": s.mean, "std": s.std, "ci_t": [s.ci_low, s.ci_high]}


def _comparison_dict(c: Comparison | None) -> dict | None:
    if c is None:
        return None
    beats = c.beats
    return {
        "delta": c.delta,
        "p_welch": c.p_welch,
        "p_welch_holm": c.p_welch_holm,
        "p_paired": c.p_paired,
        "n_pairs": c.n_pairs,
        "p_beats": {"estimate": beats.estimate, "ci": [beats.low, beats.high], "n": beats.n},
        "hedges_g": c.hedges_g,
        "hedges_gz": c.hedges_gz,
        "verdict": c.verdict,
    }


def schedule_dict(s: ScheduleStats) -> dict:
    """One schedule's statistics as plain data (``summary.json``)."""
    return {
        "schedule": s.name,
        "n": s.n,
        "diverged": s.diverged,
        "divergence_rate": s.divergence_rate,
        "failed": s.failed,
        "objective": _summary_dict(s.objective) | {"ci_bootstrap": list(s.bootstrap)},
        "per_seed": {str(k): v for k, v in sorted(s.values.items())},
        "metrics": {m: _summary_dict(v) for m, v in s.metrics.items()},
        "convergence_epoch": _summary_dict(s.convergence) | {"converged": s.converged},
        "epochs_to_target": _summary_dict(s.to_target) | {"reached": s.reached},
        "wall_time": _summary_dict(s.wall_time),
        "comparison": _comparison_dict(s.comparison),
    }


def summary_json(report: Report, decision: DecisionReport | None = None) -> str:
    data: dict[str, Any] = {
        "study": report.study["name"],
        "objective": {"name": report.objective.name, "mode": report.objective.mode},
        "baseline": report.baseline,
        "target": report.target,
        "alpha": ALPHA,
        "schedules": [schedule_dict(s) for s in report.stats],
        "failed_trials": [
            {"schedule": t.schedule, "seed": t.seed, "error": t.error}
            for t in report.trials
            if t.status == TrialStatus.FAILED
        ],
    }
    if decision is not None:
        data["until_decided"] = decision_dict(decision)
    return json.dumps(_clean(data), indent=2, allow_nan=False) + "\n"


def _flat(prefix: str, data: Any) -> dict[str, Any]:
    if isinstance(data, dict):
        return {k: v for key, sub in data.items() for k, v in _flat(f"{prefix}{key}.", sub).items()}
    if isinstance(data, list):
        return {f"{prefix}{'low' if i == 0 else 'high'}": v for i, v in enumerate(data)}
    return {prefix.rstrip("."): data}


def summary_csv(report: Report) -> str:
    """One row per schedule, one column per number of :func:`schedule_dict` (dotted names, e.g.
    ``objective.mean``, ``comparison.p_welch_holm``); empty where undefined."""
    rows = []
    for s in report.stats:
        d = schedule_dict(s)
        d.pop("per_seed")
        if d["comparison"] is None:
            d.pop("comparison")
        rows.append({k: ("" if v is None else v) for k, v in _flat("", _clean(d)).items()})
    header = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Writing


def write_report(
    report: Report, out_dir: str | Path, decision: DecisionReport | None = None
) -> dict[str, Path]:
    """Write ``report.md``, ``summary.csv``, ``summary.json`` and the plots (``lr_curves.png``,
    ``per_seed.png``, ``curves.png``) into ``out_dir``, each atomically. Returns their paths by
    kind."""
    from lrlab.lab import plots

    out = Path(out_dir)
    figures = {
        "lr_curves": ("Learning-rate schedules", plots.plot_lr_curves),
        "per_seed": (f"{report.objective.name} per seed (mean and 95% CI)", plots.plot_per_seed),
        "curves": ("Curves per epoch (mean ± std over seeds)", plots.plot_curves),
    }
    paths = {
        "report": out / "report.md",
        "summary_csv": out / "summary.csv",
        "summary_json": out / "summary.json",
    }
    images = {}
    for kind, (caption, plot) in figures.items():
        paths[kind] = out / f"{kind}.png"
        plot(report, paths[kind])
        images[caption] = paths[kind].name
    atomic_write_text(paths["summary_csv"], summary_csv(report))
    atomic_write_text(paths["summary_json"], summary_json(report, decision))
    atomic_write_text(paths["report"], markdown(report, images, decision))
    return paths
