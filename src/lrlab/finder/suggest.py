"""Reading ``base_lr``, ``max_lr`` and a single rate off a range-test curve (pure NumPy/SciPy).

The rule follows Smith (CLR, section 3.3): ``base_lr`` is where accuracy starts to rise, ``max_lr``
where the rise slows, turns ragged or falls. Concretely, on a curve ``y`` made higher-is-better
(accuracy as is; a loss as ``-log(loss)`` when every loss is positive, ``-loss`` otherwise):

1. ``S`` = centred moving average of ``y`` over ``window`` (a fraction of the points, odd) with
   linear-fit ends (:func:`~lrlab.finder.smoothing.local_linear`). ``rise = max(S) - S[0]``. The
   noise level is the robust spread (MAD) of the second differences of ``y``, which a smooth trend
   does not produce. A rise below ``flat_sigmas`` noise units of ``S`` is a *flat* curve (no bounds).
2. **base_lr**: the first point where ``S`` has made ``rise_start`` (10 %) of its rise.
3. **max_lr** is the smallest of the candidates that apply:

   * *slows* (accuracy only): the first point where ``S`` has made ``slows_at`` (90 %) of its
     rise, provided a plateau (at least one window) or a fall follows;
   * *falls*: after the best point ``S`` drops by ``fall_drop`` (10 %) of the rise, or the test
     stopped on divergence / NaN. The fall's onset is the last point before that drop within
     ``plateau_tol`` (2 %) of the best. For accuracy this onset is the candidate (Smith). For a loss
     it is multiplied by ``backoff`` (0.5): a loss shows an instability only after it has grown
     for some steps, so a sweep sees it late (on least squares the onset lies 1.4-2.7x beyond the
     stability edge); 0.5 is also Smith's rule of thumb that the best rate lies within a factor of
     two of the largest that converges;
   * *ragged*: from mid-rise on, the local noise (rolling median of the second-difference noise)
     stays above ``ragged_factor`` (2.5) x its median over the rise, and above ``ragged_min``
     (5 %) of the rise, for half a window;
   * *edge*: for SGD, when the test diverged, the stability edge estimated from the blow-up rate
     (:mod:`lrlab.finder.stability`), times ``edge_margin`` (0.8).

   No candidate (the curve still rises at the end): ``max_lr`` is the best point and is flagged
   ``never_fell`` (a lower bound: raise ``end_lr``).
4. **lr** (one rate for a fixed schedule): ``max_lr / 2``, but at least ``base_lr``. One-cycle users
   take ``max_lr`` as the peak. A range wider than ``wide_range`` (20x) is flagged ``wide_range``
   with Smith's alternative ``base_lr = max_lr / 4`` in the message (the bounds are not changed).

Confidence: the bounds are read again on every repeat (other seeds / data orders; the point
estimate is then the median) or, for a single run, on ``bootstrap`` moving-block resamples of the
residuals around ``S`` (blocks of one window, so the resamples keep the noise's correlation).
The spread is reported as quartiles, the interquartile range and the standard deviation of
``log10(lr)``; an interquartile range of ``max_lr`` above ``noisy_log10_iqr`` (a factor 2) is
flagged ``too_noisy``. With repeats, the reason of each reading quotes the median it reports,
every run's value and the reason of the run nearest to the median.

Beside these, :class:`Suggestion` carries fastai's ``valley`` / ``steep`` / ``minimum``
(:mod:`lrlab.finder.fastai`), pooled over repeats the same way, with their reasons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from lrlab import validate
from lrlab.errors import ConfigError
from lrlab.finder.constants import BOUNDS, FASTAI_READINGS, SIGNAL_CHOICES
from lrlab.finder.fastai import FastaiReading
from lrlab.finder.smoothing import local_linear, odd_window
from lrlab.schedules import CYCLIC_MODES, Cyclic

__all__ = [
    "Candidate",
    "Diagnostic",
    "Reading",
    "Spread",
    "SuggestOptions",
    "Suggestion",
    "curve_signal",
    "read_curve",
]

# ``(lo, hi]`` of the options that are fractions.
_FRACTIONS = ("window", "rise_start", "fall_drop", "plateau_tol", "backoff", "edge_margin")


@dataclass(frozen=True)
class SuggestOptions:
    """Parameters of the reading rule (see the module docstring)."""

    window: float = 0.1
    rise_start: float = 0.1
    fall_drop: float = 0.1
    plateau_tol: float = 0.02
    ragged_factor: float = 2.5
    ragged_min: float = 0.05
    slows_at: float | None = 0.9
    backoff: float = 0.5
    edge_margin: float = 0.8
    use_edge: bool = True
    flat_sigmas: float = 4.0
    min_points: int = 10
    bootstrap: int = 200
    seed: int = 0
    noisy_log10_iqr: float = 0.3
    wide_range: float = 20.0

    def __post_init__(self) -> None:
        for name in _FRACTIONS:
            validate.real(getattr(self, name), f"suggest.{name}", lo=0.0, lo_open=True, hi=1.0)
        if self.slows_at is not None:
            validate.real(self.slows_at, "suggest.slows_at", lo=0, hi=1, lo_open=True, hi_open=True)
        validate.real(self.ragged_min, "suggest.ragged_min", lo=0.0)
        validate.real(self.ragged_factor, "suggest.ragged_factor", lo=1.0, lo_open=True)
        validate.real(self.wide_range, "suggest.wide_range", lo=1.0, lo_open=True)
        validate.real(self.flat_sigmas, "suggest.flat_sigmas", lo=0.0)
        validate.real(self.noisy_log10_iqr, "suggest.noisy_log10_iqr", lo=0.0)
        validate.boolean(self.use_edge, "suggest.use_edge")
        validate.integer(self.min_points, "suggest.min_points", lo=5)
        validate.integer(self.bootstrap, "suggest.bootstrap", lo=0, hi=100_000)
        validate.integer(self.seed, "suggest.seed", lo=0)


@dataclass(frozen=True)
class Diagnostic:
    """A warning about the reading: ``code`` is stable, ``message`` is for people."""

    code: str
    message: str


class Candidate(NamedTuple):
    """A rate one reading proposes and the sentence that says why."""

    lr: float
    reason: str


@dataclass
class Reading:
    """The bounds read from one curve (no confidence yet)."""

    base_lr: float | None
    max_lr: float | None
    lr: float | None
    reasons: dict[str, str]
    diagnostics: list[Diagnostic]
    candidates: dict[str, float] = field(default_factory=dict)
    smoothed: np.ndarray | None = None


@dataclass(frozen=True)
class Spread:
    """Spread of one bound over repeats or bootstrap resamples (``log10`` space)."""

    method: str
    n: int
    q25: float
    median: float
    q75: float
    log10_iqr: float
    log10_std: float

    @classmethod
    def of(cls, values: Sequence[float | None], method: str) -> Spread | None:
        v = np.asarray([x for x in values if _usable(x)], dtype=float)
        if len(v) == 0:
            return None
        lg = np.log10(v)
        q25, med, q75 = np.percentile(lg, [25, 50, 75])
        return cls(
            method=method,
            n=len(v),
            q25=float(10**q25),
            median=float(10**med),
            q75=float(10**q75),
            log10_iqr=float(q75 - q25),
            log10_std=float(np.std(lg, ddof=1)) if len(v) > 1 else 0.0,
        )


def _usable(x: float | None) -> bool:
    return x is not None and bool(np.isfinite(x)) and x > 0


@dataclass
class Suggestion:
    """``base_lr`` / ``max_lr`` for a cyclical schedule, ``lr`` for a fixed one, and fastai's
    ``valley`` / ``steep`` / ``minimum`` (in ``fastai``), with reasons (``reasons[name]``),
    spreads and diagnostics. ``ok`` is False when no usable reading of lrlab's bounds exists."""

    base_lr: float | None
    max_lr: float | None
    lr: float | None
    reasons: dict[str, str]
    spread: dict[str, Spread | None]
    diagnostics: list[Diagnostic]
    signal: str
    candidates: dict[str, float] = field(default_factory=dict)
    n_runs: int = 1
    fastai: dict[str, float | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.base_lr is not None and self.max_lr is not None

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnostics]

    def to_cyclic_config(
        self, step_size_up: int, *, mode: str = "triangular2", step_size_down: int | None = None
    ) -> dict[str, Any]:
        """The config of a :class:`~lrlab.schedules.Cyclic` schedule between the suggested bounds
        (``lrlab.from_config`` takes it as is)."""
        if self.base_lr is None or self.max_lr is None:
            raise ConfigError(
                "suggestion has no usable base_lr/max_lr ("
                + "; ".join(d.message for d in self.diagnostics)
                + ")"
            )
        validate.integer(step_size_up, "step_size_up", lo=1)
        if step_size_down is not None:
            validate.integer(step_size_down, "step_size_down", lo=1)
        validate.choice(mode, "mode", CYCLIC_MODES)
        cyclic = Cyclic(
            base_lr=float(self.base_lr),
            max_lr=float(self.max_lr),
            step_size_up=int(step_size_up),
            step_size_down=None if step_size_down is None else int(step_size_down),
            mode=mode,
        )
        return cyclic.to_config()

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_lr": self.base_lr,
            "max_lr": self.max_lr,
            "lr": self.lr,
            "signal": self.signal,
            "n_runs": self.n_runs,
            "reasons": dict(self.reasons),
            "spread": {k: (asdict(v) if v is not None else None) for k, v in self.spread.items()},
            "diagnostics": [asdict(d) for d in self.diagnostics],
            "candidates": dict(self.candidates),
            "fastai": dict(self.fastai),
        }

    def _fmt(self, name: str, v: float | None) -> str:
        if v is None:
            return f"{name}=n/a"
        s = self.spread.get(name)
        extra = f" (IQR {s.q25:.3g}..{s.q75:.3g}, {s.method} n={s.n})" if s and s.n > 1 else ""
        return f"{name}={v:.4g}{extra}"

    def __str__(self) -> str:
        parts = [self._fmt(key, getattr(self, key)) for key in BOUNDS]
        fastai = [self._fmt(key, self.fastai[key]) for key in FASTAI_READINGS if key in self.fastai]
        also = f"; fastai: {', '.join(fastai)}" if fastai else ""
        diag = f"; warnings: {', '.join(self.codes)}" if self.diagnostics else ""
        return f"Suggestion({', '.join(parts)}; from {self.signal}{also}{diag})"


# ----------------------------------------------------------------------------- reading one curve


def curve_signal(values, kind: str) -> tuple[np.ndarray, str]:
    """Map a curve to higher-is-better: accuracies as is, losses to ``-log`` (or ``-loss``).

    >>> curve_signal([1.0, 2.0], "loss")[1], curve_signal([0.0, 2.0], "loss")
    ('-log(loss)', (array([-0., -2.]), '-loss'))
    """
    y = np.asarray(values, dtype=float)
    if kind == "accuracy":
        return y, "accuracy"
    finite = y[np.isfinite(y)]
    if len(finite) and np.all(finite > 0):
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.log(y), "-log(loss)"
    return -y, "-loss"


def _noise_sigma(y: np.ndarray) -> float:
    """Robust noise level from second differences (a smooth trend contributes ~0)."""
    if len(y) < 4:
        return 0.0
    d2 = np.diff(y, 2)
    return float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6.0))


def _rolling_noise(y: np.ndarray, window: int) -> np.ndarray:
    """Local noise: centred rolling median of |second differences| (robust to single spikes;
    the window is cut, not padded, at the two ends)."""
    n = len(y)
    if n < 4:
        return np.zeros(n)
    a = np.abs(np.diff(y, 2))
    a = np.concatenate([[a[0]], a, [a[-1]]]) * (1.4826 / math.sqrt(6.0))
    half = max(window // 2, 1)
    padded = np.concatenate([np.full(half, np.nan), a, np.full(half, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return np.nanmedian(windows, axis=1)


def _cut_at_non_finite(lr, y) -> tuple[np.ndarray, np.ndarray]:
    """Both curves up to (not including) the first point where either is not finite."""
    lr, y = np.asarray(lr, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(y) & np.isfinite(lr)
    if keep.all():
        return lr, y
    first_bad = int(np.argmin(keep))
    return lr[:first_bad], y[:first_bad]


@dataclass(frozen=True)
class _Curve:
    """A curve ready to be read: its smooth ``s`` (over ``window`` points), noise ``sigma``, the
    index ``best`` of the smooth's maximum and the ``rise`` from its first value to it."""

    lr: np.ndarray
    y: np.ndarray
    s: np.ndarray
    window: int
    sigma: float
    best: int
    rise: float
    name: str

    @classmethod
    def of(cls, lr: np.ndarray, y: np.ndarray, options: SuggestOptions, name: str) -> _Curve:
        w = odd_window(len(y), options.window)
        s = local_linear(y, w)
        best = int(np.argmax(s))
        rise = float(s[best] - s[0])
        return cls(lr, y, s, w, _noise_sigma(y), best, rise, name)

    @property
    def top(self) -> float:
        return float(self.s[self.best])

    def first_reaching(self, frac: float) -> int:
        """The first point (up to the best) where the smooth has made ``frac`` of its rise."""
        return int(np.argmax(self.s[: self.best + 1] >= self.s[0] + frac * self.rise))

    def is_flat(self, options: SuggestOptions) -> bool:
        limit = options.flat_sigmas * self.sigma / math.sqrt(self.window)
        return self.rise <= max(limit, 1e-9 * (1.0 + abs(self.top)))


class _Fall(NamedTuple):
    """The *fall* reading: its candidate (None when the curve did not fall), whether the test
    fell (dropped or stopped), and ``onset``, the last point before the fall (the end otherwise)."""

    candidate: Candidate | None
    fell: bool
    onset: int
    diagnostics: list[Diagnostic]


def read_fall(c: _Curve, o: SuggestOptions, kind: str, stop_reason: str) -> _Fall:
    """After the best point the smooth drops by ``fall_drop`` of the rise, or the test stopped on
    divergence / NaN; the onset is the last point before that within ``plateau_tol`` of the best."""
    after = np.nonzero(c.s[c.best + 1 :] < c.top - o.fall_drop * c.rise)[0]
    drop = c.best + 1 + int(after[0]) if len(after) else None
    if drop is None and stop_reason not in ("diverged", "nan"):
        return _Fall(None, False, len(c.y) - 1, [])
    end = drop if drop is not None else len(c.y)
    within = np.nonzero(c.s[c.best : end] >= c.top - o.plateau_tol * c.rise)[0]
    onset = c.best + int(within[-1])
    why = "falls" if drop is not None else f"stops ({stop_reason})"
    at = c.lr[onset]
    if kind == "loss":  # a loss shows an instability only once it has grown: back off
        candidate = Candidate(
            float(at * o.backoff),
            f"{c.name} is at its best up to lr={at:.4g} and then {why}; "
            f"x{o.backoff:g} for the lag of a sweep",
        )
    else:  # Smith: max_lr where accuracy starts to fall
        candidate = Candidate(float(at), f"{c.name} starts to fall at lr={at:.4g} (then {why})")
    diags = []
    if c.best == 0:
        diags.append(
            Diagnostic(
                "fell_from_start",
                f"{c.name} is best at the first point: start_lr is already too large",
            )
        )
    return _Fall(candidate, True, onset, diags)


def read_slows(c: _Curve, o: SuggestOptions, kind: str, fell: bool) -> Candidate | None:
    """Accuracy only: the rise has made ``slows_at`` of its total, and a plateau (a window) or a
    fall follows."""
    if kind != "accuracy" or o.slows_at is None:
        return None
    at = c.first_reaching(o.slows_at)
    if not (fell or c.best - at >= c.window):
        return None
    return Candidate(
        float(c.lr[at]),
        f"{c.name}'s rise slows: {o.slows_at:.0%} of it is made by lr={c.lr[at]:.4g}",
    )


def read_ragged(c: _Curve, o: SuggestOptions, base: int, onset: int) -> Candidate | None:
    """From mid-rise to the fall's onset, the local noise stays above ``ragged_factor`` x its
    median over the rise (and above ``ragged_min`` of the rise) for half a window."""
    noise = _rolling_noise(c.y, c.window)
    during_rise = noise[base : c.best + 1] if c.best > base else noise[: c.best + 1]
    ref = float(np.median(during_rise))
    if ref <= 0:
        return None
    hot = (noise > o.ragged_factor * ref) & (noise > o.ragged_min * c.rise)
    run = max(3, c.window // 2)
    for i in range(c.first_reaching(0.5), onset + 1):
        stretch = hot[i : i + run]
        if len(stretch) == run and stretch.all():
            return Candidate(
                float(c.lr[i]),
                f"{c.name} turns ragged at lr={c.lr[i]:.4g} (local noise "
                f"> {o.ragged_factor:g}x its median during the rise)",
            )
    return None


def read_edge(edge_lr: float | None, o: SuggestOptions) -> Candidate | None:
    """The stability edge the caller estimated from the blow-up, times ``edge_margin``."""
    if not (o.use_edge and _usable(edge_lr)):
        return None
    assert edge_lr is not None
    return Candidate(
        float(edge_lr * o.edge_margin),
        f"the loss blew up at a rate that puts the stability edge at "
        f"lr={edge_lr:.4g}; x{o.edge_margin:g} to stay below it",
    )


def _too_few(n: int, o: SuggestOptions, name: str) -> Diagnostic:
    return Diagnostic(
        "too_few_points",
        f"only {n} usable points on {name} (need {o.min_points}): "
        "use more steps or evaluate more often",
    )


def _flat(c: _Curve) -> Diagnostic:
    return Diagnostic(
        "flat",
        f"{c.name} does not rise above its noise over the sweep "
        f"(rise {c.rise:.3g}, noise {c.sigma:.3g}): widen [start_lr, end_lr] "
        "or train longer per step",
    )


def _too_noisy(c: _Curve) -> list[Diagnostic]:
    if c.sigma <= 0.5 * c.rise:
        return []
    return [
        Diagnostic(
            "too_noisy",
            f"{c.name} noise ({c.sigma:.3g}) is large against its rise "
            f"({c.rise:.3g}): use repeats, a larger batch or more steps",
        )
    ]


def _rise_start(c: _Curve, base: int, o: SuggestOptions) -> tuple[str, list[Diagnostic]]:
    if base > 0:
        return f"{c.name} has made {o.rise_start:.0%} of its rise by lr={c.lr[base]:.4g}", []
    diag = Diagnostic(
        "rising_from_start",
        f"{c.name} rises from the first point: "
        "base_lr is start_lr; a lower start_lr may read a lower bound",
    )
    return f"{c.name} rises from the first point of the sweep (lr={c.lr[0]:.4g})", [diag]


def _smallest(c: _Curve, candidates: dict[str, Candidate]) -> tuple[Candidate, list[Diagnostic]]:
    """max_lr: the smallest candidate; with none, the best point, flagged ``never_fell``."""
    if candidates:
        return min(candidates.values(), key=lambda cand: cand.lr), []
    best = Candidate(
        float(c.lr[c.best]),
        f"{c.name} still rises at the end of the sweep; best point lr={c.lr[c.best]:.4g}",
    )
    diag = Diagnostic(
        "never_fell",
        f"{c.name} never slowed, fell, turned ragged or diverged: "
        "max_lr is a lower bound, raise end_lr",
    )
    return best, [diag]


def _below(base: Candidate, max_lr: float, lr: np.ndarray) -> tuple[Candidate, list[Diagnostic]]:
    """base_lr is a positive rate below max_lr, else Smith's ``max_lr / 4``."""
    value: float | None = base.lr
    if base.lr <= 0:
        value = float(lr[lr > 0][0]) if np.any(lr > 0) else None
    if value is not None and value < max_lr:
        return Candidate(value, base.reason), []
    rule = Candidate(
        max_lr / 4.0, "max_lr / 4 (Smith's rule of thumb: the curve's rise starts above max_lr)"
    )
    diag = Diagnostic(
        "base_from_rule_of_thumb", "the rise starts at or above max_lr; base_lr = max_lr / 4"
    )
    return rule, [diag]


def single_lr(base_lr: float, max_lr: float) -> Candidate:
    """One rate for a fixed schedule: ``max_lr / 2``, at least ``base_lr``.

    >>> single_lr(0.1, 0.4).lr, single_lr(0.3, 0.4).lr
    (0.2, 0.3)
    """
    if max_lr / 2.0 >= base_lr:
        return Candidate(
            max_lr / 2.0,
            "max_lr / 2 (Smith's rule of thumb: the best fixed rate is within a factor "
            "of two of the largest that converges)",
        )
    return Candidate(base_lr, "base_lr (max_lr / 2 would fall below it)")


def wide_range(base_lr: float | None, max_lr: float | None, o: SuggestOptions) -> list[Diagnostic]:
    """``wide_range`` when ``max_lr / base_lr`` exceeds ``o.wide_range`` (the bounds are kept)."""
    if not (base_lr and max_lr) or max_lr / base_lr <= o.wide_range:
        return []
    return [
        Diagnostic(
            "wide_range",
            f"max_lr / base_lr = {max_lr / base_lr:.3g}: a cycle this wide "
            "spends much of its time at small rates; Smith's rule of thumb "
            f"base_lr = max_lr / 4 would give {max_lr / 4:.3g}",
        )
    ]


def read_curve(
    lr,
    y,
    *,
    kind: str = "accuracy",
    stop_reason: str = "end",
    edge_lr: float | None = None,
    options: SuggestOptions | None = None,
    signal_name: str = "signal",
) -> Reading:
    """Read the bounds off one higher-is-better curve ``y`` sampled at rates ``lr`` (ascending).

    ``kind`` is ``"accuracy"`` (Smith's reading, with the *slows* candidate) or ``"loss"`` (``y``
    is then ``-log(loss)`` or ``-loss``; no *slows* candidate). ``stop_reason`` is the test's
    ("end", "diverged", "nan", "end_of_data"); ``edge_lr`` an optional stability edge (already
    estimated) that becomes a candidate for ``max_lr``.
    """
    o = options or SuggestOptions()
    lr, y = _cut_at_non_finite(lr, y)
    if len(y) < o.min_points:
        return Reading(None, None, None, {}, [_too_few(len(y), o, signal_name)])
    c = _Curve.of(lr, y, o, signal_name)
    if c.is_flat(o):
        return Reading(None, None, None, {}, [_flat(c)], smoothed=c.s)
    base = c.first_reaching(o.rise_start)
    base_reason, diags = _rise_start(c, base, o)
    fall = read_fall(c, o, kind, stop_reason)
    found = {
        "fall": fall.candidate,
        "slows": read_slows(c, o, kind, fall.fell),
        "ragged": read_ragged(c, o, base, fall.onset),
        "edge": read_edge(edge_lr, o),
    }
    candidates = {name: cand for name, cand in found.items() if cand is not None}
    top, top_diags = _smallest(c, candidates)
    low, low_diags = _below(Candidate(float(lr[base]), base_reason), top.lr, lr)
    one = single_lr(low.lr, top.lr)
    diags = _too_noisy(c) + diags + fall.diagnostics + top_diags + low_diags
    reasons = {"base_lr": low.reason, "max_lr": top.reason, "lr": one.reason}
    values = {name: cand.lr for name, cand in candidates.items()}
    diags += wide_range(low.lr, top.lr, o)
    return Reading(low.lr, top.lr, one.lr, reasons, diags, values, smoothed=c.s)


def _block_bootstrap(resid: np.ndarray, block: int, rng: np.random.Generator) -> np.ndarray:
    n = len(resid)
    block = max(1, min(block, n))
    starts = rng.integers(0, n - block + 1, size=n // block + 1)
    return np.concatenate([resid[s : s + block] for s in starts])[:n]


def bootstrap_readings(
    lr,
    y,
    *,
    kind: str,
    stop_reason: str,
    edge_lr: float | None,
    options: SuggestOptions,
    signal_name: str,
) -> list[Reading]:
    """Readings on moving-block resamples of the residuals around the centred smooth."""
    lr, y = _cut_at_non_finite(lr, y)
    if len(y) < options.min_points or options.bootstrap == 0:
        return []
    w = odd_window(len(y), options.window)
    smooth = local_linear(y, w)
    resid = y - smooth
    rng = np.random.default_rng(options.seed)
    return [
        read_curve(
            lr,
            smooth + _block_bootstrap(resid, w, rng),
            kind=kind,
            stop_reason=stop_reason,
            edge_lr=edge_lr,
            options=options,
            signal_name=signal_name,
        )
        for _ in range(int(options.bootstrap))
    ]


# ----------------------------------------------------------------------------- confidence


def _pooled_reason(spread: Spread, runs: Sequence[Candidate | None]) -> str:
    """The reason of a median over runs: the median itself, every run's value, and the reason of
    the run nearest to it (in ``log lr``).

    >>> s = Spread.of([0.1, 0.2, 0.4], "repeats")
    >>> _pooled_reason(s, [Candidate(0.1, "a"), Candidate(0.2, "b"), Candidate(0.4, "c")])
    'median of 3 runs = 0.2 (runs: 0.1, 0.2, 0.4); the median run: b'
    """
    shown = ", ".join("n/a" if r is None or not _usable(r.lr) else f"{r.lr:.4g}" for r in runs)
    valid = [r for r in runs if r is not None and _usable(r.lr)]
    nearest = min(valid, key=lambda r: abs(math.log(r.lr / spread.median)))
    which = "the median run" if math.isclose(nearest.lr, spread.median) else "the nearest run"
    return (
        f"median of {spread.n} runs = {spread.median:.4g} (runs: {shown}); {which}: "
        f"{nearest.reason}"
    )


def _pool(
    runs: Sequence[Candidate | None], method: str, use_median: bool
) -> tuple[Candidate | None, Spread | None]:
    """One reading over runs (``runs[0]`` is the primary) and its spread over ``runs[1:]`` for a
    bootstrap, or over all runs, whose median it then reports, for repeats."""
    primary = runs[0]
    replicates = runs if use_median else runs[1:]
    spread = Spread.of([r.lr if r else None for r in replicates], method) if replicates else None
    if not use_median or spread is None:
        return primary, spread
    return Candidate(spread.median, _pooled_reason(spread, runs)), spread


def _candidate(lr: float | None, reason: str) -> Candidate | None:
    return None if lr is None else Candidate(lr, reason)


def _bounds_of(reading: Reading) -> dict[str, Candidate | None]:
    return {
        key: _candidate(getattr(reading, key), reading.reasons.get(key, "n/a")) for key in BOUNDS
    }


def _uncrossed(values: dict[str, Candidate | None]) -> None:
    """Medians of the bounds taken separately may cross: fall back to Smith's ``max_lr / 4``."""
    low, top = values["base_lr"], values["max_lr"]
    if low is not None and top is not None and low.lr >= top.lr:
        values["base_lr"] = Candidate(top.lr / 4.0, "max_lr / 4 (medians crossed)")


def _confidence_diagnostics(
    replicates: Sequence[Reading], spread: Spread | None, method: str, o: SuggestOptions
) -> list[Diagnostic]:
    out = []
    failed = sum(1 for r in replicates if r.max_lr is None)
    if failed:
        out.append(
            Diagnostic(
                "unstable_reading",
                f"{failed} of {len(replicates)} {method} readings gave no bounds",
            )
        )
    if spread is not None and spread.log10_iqr > o.noisy_log10_iqr:
        out.append(
            Diagnostic(
                "too_noisy",
                f"max_lr varies by a factor {10**spread.log10_iqr:.2g} "
                f"(interquartile, {method}): the reading is uncertain",
            )
        )
    return out


def combine(
    primary: Reading,
    replicates: Sequence[Reading],
    *,
    method: str,
    signal: str,
    options: SuggestOptions,
    n_runs: int = 1,
    use_median: bool = False,
    fastai: Sequence[Mapping[str, FastaiReading]] = (),
) -> Suggestion:
    """Attach spreads to a reading: over bootstrap ``replicates`` of it, or (``use_median``) over
    repeats, whose medians are then reported; ``replicates`` then holds every run, ``primary``
    first, and ``fastai`` each run's fastai readings (else the primary's alone)."""
    runs = list(replicates) if use_median else [primary, *replicates]
    per_run = [_bounds_of(r) for r in runs]
    values: dict[str, Candidate | None] = {}
    spread: dict[str, Spread | None] = {}
    for key in BOUNDS:
        values[key], spread[key] = _pool([b[key] for b in per_run], method, use_median)
    if use_median:
        _uncrossed(values)
    for key in FASTAI_READINGS if fastai else ():
        found = [_candidate(f[key].lr, f[key].reason) for f in fastai]
        pooled, spread[key] = _pool(found, "repeats", use_median=len(found) > 1)
        values[key] = pooled or Candidate(math.nan, fastai[0][key].reason)
    reasons = {k: v.reason for k, v in values.items() if v is not None}
    number = {k: (None if v is None or not _usable(v.lr) else v.lr) for k, v in values.items()}
    diags = [d for d in primary.diagnostics if d.code != "wide_range"]
    diags += wide_range(number["base_lr"], number["max_lr"], options)  # on the reported values
    if replicates:
        extra = _confidence_diagnostics(replicates, spread.get("max_lr"), method, options)
        diags += [d for d in extra if d.code not in {x.code for x in diags}]
    return Suggestion(
        number["base_lr"],
        number["max_lr"],
        number["lr"],
        reasons,
        spread,
        diags,
        signal,
        dict(primary.candidates),
        n_runs,
        fastai={k: number[k] for k in FASTAI_READINGS if k in number},
    )


def validate_signal(signal: str) -> str:
    return validate.choice(signal, "signal", SIGNAL_CHOICES)


def _known_options(names) -> None:
    unknown = set(names) - set(SuggestOptions.__dataclass_fields__)
    if unknown:
        raise ConfigError(
            f"unknown suggest option(s) {sorted(unknown)}; allowed: "
            f"{', '.join(SuggestOptions.__dataclass_fields__)}"
        )


def options_from(
    options: SuggestOptions | Mapping[str, Any] | None, **overrides: Any
) -> SuggestOptions:
    """``options`` (None, a SuggestOptions or a dict of its fields) with ``overrides`` applied
    (None values ignored)."""
    if options is None:
        base = SuggestOptions()
    elif isinstance(options, SuggestOptions):
        base = options
    elif isinstance(options, Mapping):
        _known_options(options)
        base = SuggestOptions(**options)
    else:
        raise ConfigError(
            f"options must be a SuggestOptions or a dict, got {type(options).__name__}"
        )
    _known_options(overrides)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(base, **overrides) if overrides else base
