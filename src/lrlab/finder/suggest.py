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
flagged ``too_noisy``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from lrlab.errors import ConfigError
from lrlab.finder.smoothing import local_linear, odd_window

__all__ = [
    "Diagnostic",
    "Reading",
    "Spread",
    "SuggestOptions",
    "Suggestion",
    "curve_signal",
    "read_curve",
]

SIGNALS = ("auto", "val_acc", "train_acc", "val_loss", "loss")


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

    def __post_init__(self):
        checks = {
            "window": (0.0, 1.0),
            "rise_start": (0.0, 1.0),
            "fall_drop": (0.0, 1.0),
            "plateau_tol": (0.0, 1.0),
            "backoff": (0.0, 1.0),
            "edge_margin": (0.0, 1.0),
        }
        for name, (lo, hi) in checks.items():
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and lo < v <= hi):
                raise ConfigError(f"suggest.{name} must be in ({lo}, {hi}], got {v!r}")
        if self.slows_at is not None and not (
            isinstance(self.slows_at, (int, float)) and 0 < self.slows_at < 1
        ):
            raise ConfigError(f"suggest.slows_at must be in (0, 1) or None, got {self.slows_at!r}")
        if not (isinstance(self.ragged_min, (int, float)) and self.ragged_min >= 0):
            raise ConfigError(f"suggest.ragged_min must be >= 0, got {self.ragged_min!r}")
        if not (isinstance(self.wide_range, (int, float)) and self.wide_range > 1):
            raise ConfigError(f"suggest.wide_range must be > 1, got {self.wide_range!r}")
        if not self.ragged_factor > 1:
            raise ConfigError(f"suggest.ragged_factor must be > 1, got {self.ragged_factor!r}")
        if int(self.min_points) < 5:
            raise ConfigError(f"suggest.min_points must be >= 5, got {self.min_points!r}")
        if int(self.bootstrap) < 0:
            raise ConfigError(f"suggest.bootstrap must be >= 0, got {self.bootstrap!r}")


@dataclass(frozen=True)
class Diagnostic:
    """A warning about the reading: ``code`` is stable, ``message`` is for people."""

    code: str
    message: str


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
    def of(cls, values: Sequence[float], method: str) -> Spread | None:
        v = np.asarray(
            [x for x in values if x is not None and np.isfinite(x) and x > 0], dtype=float
        )
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


@dataclass
class Suggestion:
    """``base_lr`` / ``max_lr`` for a cyclical schedule, ``lr`` for a fixed one, with reasons,
    spreads and diagnostics. ``ok`` is False when no usable reading exists."""

    base_lr: float | None
    max_lr: float | None
    lr: float | None
    reasons: dict[str, str]
    spread: dict[str, Spread | None]
    diagnostics: list[Diagnostic]
    signal: str
    candidates: dict[str, float] = field(default_factory=dict)
    n_runs: int = 1

    @property
    def ok(self) -> bool:
        return self.base_lr is not None and self.max_lr is not None

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnostics]

    def to_cyclic_config(
        self, step_size_up: int, *, mode: str = "triangular2", step_size_down: int | None = None
    ) -> dict[str, Any]:
        """A ``{"type": "cyclic", ...}`` dict for ``lrlab.from_config`` with the suggested bounds."""
        if not self.ok:
            raise ConfigError(
                "suggestion has no usable base_lr/max_lr ("
                + "; ".join(d.message for d in self.diagnostics)
                + ")"
            )
        if (
            isinstance(step_size_up, bool)
            or not isinstance(step_size_up, (int, np.integer))
            or step_size_up < 1
        ):
            raise ConfigError(f"step_size_up must be an integer >= 1, got {step_size_up!r}")
        if mode not in ("triangular", "triangular2", "exp_range"):
            raise ConfigError(
                f"mode must be one of triangular, triangular2, exp_range, got {mode!r}"
            )
        cfg: dict[str, Any] = {
            "type": "cyclic",
            "mode": mode,
            "base_lr": float(self.base_lr),
            "max_lr": float(self.max_lr),
            "step_size_up": int(step_size_up),
        }
        if step_size_down is not None:
            cfg["step_size_down"] = int(step_size_down)
        return cfg

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
        }

    def __str__(self) -> str:
        def fmt(name: str, v: float | None) -> str:
            if v is None:
                return f"{name}=n/a"
            s = self.spread.get(name)
            extra = (
                f" (IQR {s.q25:.3g}..{s.q75:.3g}, {s.method} n={s.n})"
                if s is not None and s.n > 1
                else ""
            )
            return f"{name}={v:.4g}{extra}"

        parts = [fmt("base_lr", self.base_lr), fmt("max_lr", self.max_lr), fmt("lr", self.lr)]
        diag = f"; warnings: {', '.join(self.codes)}" if self.diagnostics else ""
        return f"Suggestion({', '.join(parts)}; from {self.signal}{diag})"


# ----------------------------------------------------------------------------- reading one curve


def curve_signal(values, kind: str) -> tuple[np.ndarray, str]:
    """Map a curve to higher-is-better: accuracies as is, losses to ``-log`` (or ``-loss``)."""
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
    lr = np.asarray(lr, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(y) & np.isfinite(lr)
    if not keep.all():  # cut at the first non-finite point
        first_bad = int(np.argmin(keep))
        lr, y = lr[:first_bad], y[:first_bad]
    n = len(y)
    diags: list[Diagnostic] = []
    if n < o.min_points:
        diags.append(
            Diagnostic(
                "too_few_points",
                f"only {n} usable points on {signal_name} (need {o.min_points}): "
                "use more steps or evaluate more often",
            )
        )
        return Reading(None, None, None, {}, diags)
    w = odd_window(n, o.window)
    S = local_linear(y, w)
    sigma = _noise_sigma(y)
    p = int(np.argmax(S))
    S0, Sbest = float(S[0]), float(S[p])
    rise = Sbest - S0
    flat_limit = max(o.flat_sigmas * sigma / math.sqrt(w), 1e-9 * (1.0 + abs(Sbest)))
    if rise <= flat_limit:
        diags.append(
            Diagnostic(
                "flat",
                f"{signal_name} does not rise above its noise over the sweep "
                f"(rise {rise:.3g}, noise {sigma:.3g}): widen [start_lr, end_lr] "
                "or train longer per step",
            )
        )
        return Reading(None, None, None, {}, diags, smoothed=S)
    if sigma > 0.5 * rise:
        diags.append(
            Diagnostic(
                "too_noisy",
                f"{signal_name} noise ({sigma:.3g}) is large against its rise "
                f"({rise:.3g}): use repeats, a larger batch or more steps",
            )
        )

    def first_reaching(frac: float) -> int:
        return int(np.argmax(S[: p + 1] >= S0 + frac * rise))

    # base_lr: where the rise starts
    b = first_reaching(o.rise_start)
    reasons = {
        "base_lr": f"{signal_name} has made {o.rise_start:.0%} of its rise by lr={lr[b]:.4g}"
    }
    if b == 0:
        diags.append(
            Diagnostic(
                "rising_from_start",
                f"{signal_name} rises from the first point: "
                "base_lr is start_lr; a lower start_lr may read a lower bound",
            )
        )
        reasons["base_lr"] = (
            f"{signal_name} rises from the first point of the sweep (lr={lr[0]:.4g})"
        )
    candidates: dict[str, float] = {}
    cand_reason: dict[str, str] = {}

    # falls: after the best point the curve drops by fall_drop of the rise, or the test stopped
    after = np.nonzero(S[p + 1 :] < Sbest - o.fall_drop * rise)[0]
    j = p + 1 + int(after[0]) if len(after) else None
    fell = j is not None or stop_reason in ("diverged", "nan")
    if fell:
        end = j if j is not None else n
        within = np.nonzero(S[p:end] >= Sbest - o.plateau_tol * rise)[0]
        f = p + int(within[-1])
        why = "falls" if j is not None else f"stops ({stop_reason})"
        if kind == "loss":  # a loss shows an instability only once it has grown: back off
            candidates["fall"] = float(lr[f] * o.backoff)
            cand_reason["fall"] = (
                f"{signal_name} is at its best up to lr={lr[f]:.4g} and then {why}; "
                f"x{o.backoff:g} for the lag of a sweep"
            )
        else:  # Smith: max_lr where accuracy starts to fall
            candidates["fall"] = float(lr[f])
            cand_reason["fall"] = f"{signal_name} starts to fall at lr={lr[f]:.4g} (then {why})"
        if p == 0:
            diags.append(
                Diagnostic(
                    "fell_from_start",
                    f"{signal_name} is best at the first point: start_lr is already too large",
                )
            )
    else:
        f = n - 1

    # slows (accuracy): the rise has made slows_at of its total, and a plateau or a fall follows
    if kind == "accuracy" and o.slows_at is not None:
        s_idx = first_reaching(o.slows_at)
        if fell or p - s_idx >= w:
            candidates["slows"] = float(lr[s_idx])
            cand_reason["slows"] = (
                f"{signal_name}'s rise slows: {o.slows_at:.0%} of it is made by lr={lr[s_idx]:.4g}"
            )

    # ragged: local noise well above its level during the rise, for a while, and not negligible
    mid = first_reaching(0.5)
    noise = _rolling_noise(y, w)
    ref = float(np.median(noise[b : p + 1])) if p > b else float(np.median(noise[: p + 1]))
    if ref > 0:
        hot = (noise > o.ragged_factor * ref) & (noise > o.ragged_min * rise)
        run = max(3, w // 2)
        for i in range(mid, f + 1):
            if hot[i : i + run].all() and len(hot[i : i + run]) == run:
                candidates["ragged"] = float(lr[i])
                cand_reason["ragged"] = (
                    f"{signal_name} turns ragged at lr={lr[i]:.4g} (local noise "
                    f"> {o.ragged_factor:g}x its median during the rise)"
                )
                break

    # stability edge (estimated by the caller from the blow-up)
    if o.use_edge and edge_lr is not None and np.isfinite(edge_lr) and edge_lr > 0:
        candidates["edge"] = float(edge_lr * o.edge_margin)
        cand_reason["edge"] = (
            f"the loss blew up at a rate that puts the stability edge at "
            f"lr={edge_lr:.4g}; x{o.edge_margin:g} to stay below it"
        )

    if candidates:
        name = min(candidates, key=candidates.get)
        max_lr = candidates[name]
        reasons["max_lr"] = cand_reason[name]
    else:
        max_lr = float(lr[p])
        reasons["max_lr"] = (
            f"{signal_name} still rises at the end of the sweep; best point lr={lr[p]:.4g}"
        )
        diags.append(
            Diagnostic(
                "never_fell",
                f"{signal_name} never slowed, fell, turned ragged or diverged: "
                "max_lr is a lower bound, raise end_lr",
            )
        )
    base_lr = float(lr[b])
    if base_lr <= 0:
        base_lr = float(lr[lr > 0][0]) if np.any(lr > 0) else None
    if base_lr is None or base_lr >= max_lr:
        base_lr = max_lr / 4.0
        reasons["base_lr"] = (
            "max_lr / 4 (Smith's rule of thumb: the curve's rise starts above max_lr)"
        )
        diags.append(
            Diagnostic(
                "base_from_rule_of_thumb",
                "the rise starts at or above max_lr; base_lr = max_lr / 4",
            )
        )
    if max_lr / base_lr > o.wide_range:
        diags.append(
            Diagnostic(
                "wide_range",
                f"max_lr / base_lr = {max_lr / base_lr:.3g}: a cycle this wide "
                "spends much of its time at small rates; Smith's rule of thumb "
                f"base_lr = max_lr / 4 would give {max_lr / 4:.3g}",
            )
        )
    lr_single = max(max_lr / 2.0, base_lr)
    reasons["lr"] = (
        "max_lr / 2 (Smith's rule of thumb: the best fixed rate is within a factor "
        "of two of the largest that converges)"
        if lr_single == max_lr / 2.0
        else "base_lr (max_lr / 2 would fall below it)"
    )
    return Reading(base_lr, float(max_lr), float(lr_single), reasons, diags, candidates, smoothed=S)


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
    lr = np.asarray(lr, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(y)
    if not keep.all():
        first_bad = int(np.argmin(keep))
        lr, y = lr[:first_bad], y[:first_bad]
    n = len(y)
    if n < options.min_points or options.bootstrap == 0:
        return []
    w = odd_window(n, options.window)
    S = local_linear(y, w)
    resid = y - S
    rng = np.random.default_rng(options.seed)
    out = []
    for _ in range(int(options.bootstrap)):
        y_star = S + _block_bootstrap(resid, w, rng)
        out.append(
            read_curve(
                lr,
                y_star,
                kind=kind,
                stop_reason=stop_reason,
                edge_lr=edge_lr,
                options=options,
                signal_name=signal_name,
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
) -> Suggestion:
    """Attach spreads (and, for repeats, median point estimates) to a reading."""
    spread: dict[str, Spread | None] = {}
    values: dict[str, float | None] = {
        "base_lr": primary.base_lr,
        "max_lr": primary.max_lr,
        "lr": primary.lr,
    }
    reasons = dict(primary.reasons)
    diags = list(primary.diagnostics)
    for key in ("base_lr", "max_lr", "lr"):
        vals = [getattr(r, key) for r in replicates]
        spread[key] = Spread.of(vals, method) if replicates else None
        if use_median and spread[key] is not None:
            values[key] = spread[key].median
            reasons[key] = (
                f"median of {spread[key].n} runs; first run: {primary.reasons.get(key, 'n/a')}"
            )
    if (
        use_median
        and values["base_lr"] is not None
        and values["max_lr"] is not None
        and values["base_lr"] >= values["max_lr"]
    ):
        values["base_lr"] = values["max_lr"] / 4.0
        reasons["base_lr"] = "max_lr / 4 (medians crossed)"
    diags = [d for d in diags if d.code != "wide_range"]  # re-judged on the reported values
    if (
        values["base_lr"]
        and values["max_lr"]
        and values["max_lr"] / values["base_lr"] > options.wide_range
    ):
        ratio = values["max_lr"] / values["base_lr"]
        diags.append(
            Diagnostic(
                "wide_range",
                f"max_lr / base_lr = {ratio:.3g}: a cycle this wide spends much "
                "of its time at small rates; Smith's rule of thumb base_lr = "
                f"max_lr / 4 would give {values['max_lr'] / 4:.3g}",
            )
        )
    if replicates:
        failed = sum(1 for r in replicates if r.max_lr is None)
        if failed:
            diags.append(
                Diagnostic(
                    "unstable_reading",
                    f"{failed} of {len(replicates)} {method} readings gave no bounds",
                )
            )
        s = spread.get("max_lr")
        if (
            s is not None
            and s.log10_iqr > options.noisy_log10_iqr
            and "too_noisy" not in [d.code for d in diags]
        ):
            diags.append(
                Diagnostic(
                    "too_noisy",
                    f"max_lr varies by a factor {10**s.log10_iqr:.2g} "
                    f"(interquartile, {method}): the reading is uncertain",
                )
            )
    return Suggestion(
        values["base_lr"],
        values["max_lr"],
        values["lr"],
        reasons,
        spread,
        diags,
        signal,
        dict(primary.candidates),
        n_runs,
    )


def validate_signal(signal: str) -> str:
    if signal not in SIGNALS:
        raise ConfigError(f"signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
    return signal


def options_from(
    options: SuggestOptions | Mapping[str, Any] | None, **overrides: Any
) -> SuggestOptions:
    if options is None:
        base = SuggestOptions()
    elif isinstance(options, SuggestOptions):
        base = options
    elif isinstance(options, Mapping):
        unknown = set(options) - set(SuggestOptions.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"unknown suggest option(s) {sorted(unknown)}; allowed: "
                f"{', '.join(SuggestOptions.__dataclass_fields__)}"
            )
        base = SuggestOptions(**options)
    else:
        raise ConfigError(
            f"options must be a SuggestOptions or a dict, got {type(options).__name__}"
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(base, **overrides) if overrides else base
