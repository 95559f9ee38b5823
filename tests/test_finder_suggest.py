"""The reading rule on curves whose answer is known, the diagnostics, the confidence, and the
stability-edge model of SGD."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrlab.errors import ConfigError
from lrlab.finder import RangeTestResult, SuggestOptions, read_curve
from lrlab.finder.smoothing import centred_window, ema, local_linear
from lrlab.finder.stability import critical_product, estimate_edge, sgd_radius
from lrlab.finder.suggest import Spread


def smith_curve(lr, *, chance=0.1, top=0.8, centre=0.3, width=0.03, fall_at=None, fall_rate=2.0):
    """Accuracy that rises logistically around ``centre`` and, optionally, falls after ``fall_at``."""
    acc = chance + (top - chance) / (1.0 + np.exp(-(lr - centre) / width))
    if fall_at is not None:
        acc = acc - fall_rate * np.clip(lr - fall_at, 0, None)
    return acc


def logistic_fraction_at(frac, centre, width):
    """Where a logistic rise has made ``frac`` of its total rise (with an exact 0 start)."""
    return centre + width * math.log(frac / (1 - frac))


def _result(lr, acc=None, loss=None, stop="end", optimizer_model=None, **config):
    lr = np.asarray(lr, float)
    loss = np.ones_like(lr) if loss is None else np.asarray(loss, float)
    metrics = {} if acc is None else {"val_acc": np.asarray(acc, float)}
    return RangeTestResult(
        lr=lr,
        loss=loss,
        smoothed_loss=ema(loss, 0.9),
        metrics=metrics,
        stop_reason=stop,
        stop_lr=float(lr[-1]),
        config={"mode": "linear", "optimizer_model": optimizer_model, **config},
    )


# ------------------------------------------------------------------ reading Smith's curve


def test_clean_rise_then_plateau_reads_rise_start_and_slowdown():
    lr = np.linspace(0.0, 1.0, 201)
    acc = smith_curve(lr, fall_at=0.7)
    r = read_curve(lr, acc, kind="accuracy", signal_name="acc")
    # logistic starting at chance: 10 % / 90 % of the (centre-symmetric) rise
    want_base = logistic_fraction_at(0.1, 0.3, 0.03)
    want_max = logistic_fraction_at(0.9, 0.3, 0.03)
    step = lr[1] - lr[0]
    assert r.base_lr == pytest.approx(want_base, abs=3 * step)
    assert r.max_lr == pytest.approx(want_max, abs=3 * step)
    assert "slows" in r.reasons["max_lr"]
    assert r.candidates["fall"] == pytest.approx(0.7, abs=3 * step)  # the fall starts at 0.7
    assert r.lr == pytest.approx(max(r.max_lr / 2, r.base_lr))
    assert not r.diagnostics


def test_sharp_peak_reads_the_start_of_the_fall():
    lr = np.linspace(0.0, 1.0, 201)
    acc = smith_curve(
        lr, centre=0.5, width=0.08, fall_at=0.45, fall_rate=3.0
    )  # falls before it plateaus
    r = read_curve(lr, acc, kind="accuracy")
    peak = lr[np.argmax(acc)]
    # 90 % of the observed rise is made just before the peak: max_lr sits right below it
    assert peak - 0.06 <= r.max_lr <= peak + 0.01
    # the smoother (a window of 10 % of the sweep) blurs the kink: the onset is read within half a window
    assert r.candidates["fall"] == pytest.approx(peak, abs=0.05)
    no_slows = read_curve(lr, acc, kind="accuracy", options=SuggestOptions(slows_at=None))
    assert no_slows.max_lr == pytest.approx(peak, abs=0.05) and "fall" in no_slows.reasons["max_lr"]


def test_ragged_onset_is_detected_before_the_fall():
    rng = np.random.default_rng(0)
    lr = np.linspace(0.0, 1.0, 301)
    acc = smith_curve(lr, centre=0.25, width=0.03, fall_at=0.85)
    noise = np.where(lr < 0.55, 0.005, 0.06) * rng.standard_normal(len(lr))
    r = read_curve(lr, acc + noise, kind="accuracy", options=SuggestOptions(slows_at=None))
    assert "ragged" in r.candidates
    assert 0.5 <= r.candidates["ragged"] <= 0.62
    assert r.max_lr == pytest.approx(r.candidates["ragged"])


@pytest.mark.parametrize("seed", range(5))
def test_noisy_curve_still_brackets_the_rise(seed):
    rng = np.random.default_rng(seed)
    lr = np.linspace(0.0, 1.0, 241)
    acc = smith_curve(lr, fall_at=0.7) + 0.03 * rng.standard_normal(len(lr))
    r = read_curve(lr, acc, kind="accuracy")
    lo, hi = logistic_fraction_at(0.1, 0.3, 0.03), logistic_fraction_at(0.9, 0.3, 0.03)
    assert lo - 0.06 <= r.base_lr <= lo + 0.06
    assert hi - 0.08 <= r.max_lr <= 0.7 + 0.02
    assert r.base_lr < r.max_lr


def test_edges_of_the_smoother_are_not_raw_points():
    # the first point is an outlier: a symmetric shrinking window would return it as S[0]
    lr = np.linspace(0.0, 1.0, 101)
    acc = smith_curve(lr, fall_at=0.8)
    acc[0] = 0.7
    r = read_curve(lr, acc, kind="accuracy")
    assert r.base_lr > 0.15
    np.testing.assert_allclose(
        local_linear(np.arange(20.0), 5), np.arange(20.0), atol=1e-9
    )  # exact on lines


# ------------------------------------------------------------------ diagnostics


def test_flat_curve_gives_no_bounds_and_says_so():
    rng = np.random.default_rng(1)
    lr = np.linspace(0.001, 1.0, 100)
    r = read_curve(lr, 0.1 + 0.02 * rng.standard_normal(100), kind="accuracy")
    assert r.base_lr is None and r.max_lr is None
    assert [d.code for d in r.diagnostics] == ["flat"]
    sug = _result(lr, acc=0.1 + 0.02 * rng.standard_normal(100)).suggest()
    assert not sug.ok and "flat" in sug.codes
    with pytest.raises(ConfigError, match="no usable"):
        sug.to_cyclic_config(step_size_up=10)


def test_too_few_points():
    lr = np.linspace(0.01, 1.0, 6)
    r = read_curve(lr, smith_curve(lr), kind="accuracy")
    assert r.max_lr is None and r.diagnostics[0].code == "too_few_points"


def test_never_fell_and_never_diverged():
    lr = np.linspace(0.0, 1.0, 150)
    acc = 0.1 + 0.7 * lr**2  # still rising steeply at the end
    sug = _result(lr, acc=acc).suggest()
    assert {"never_fell", "never_diverged"} <= set(sug.codes)
    assert sug.max_lr == pytest.approx(lr[-1], rel=0.02)


def test_too_noisy_is_flagged():
    rng = np.random.default_rng(3)
    lr = np.linspace(0.0, 1.0, 120)
    acc = smith_curve(lr, top=0.25, fall_at=0.7) + 0.12 * rng.standard_normal(120)
    sug = _result(lr, acc=acc).suggest()
    assert "too_noisy" in sug.codes


def test_nan_in_curve_is_cut():
    lr = np.linspace(0.0, 1.0, 201)
    acc = smith_curve(lr, fall_at=0.7)
    acc_nan = acc.copy()
    acc_nan[150:] = np.nan
    a = read_curve(lr, acc_nan, kind="accuracy")
    b = read_curve(lr[:150], acc[:150], kind="accuracy")
    assert a.base_lr == b.base_lr and a.max_lr == b.max_lr


def test_loss_signal_uses_log_and_backs_off_the_fall():
    lr = np.linspace(0.01, 1.0, 200)
    # a loss that decays, sits on a floor and turns up at 0.6
    loss = 0.05 + 2.0 * np.exp(-lr / 0.05) + 5.0 * np.clip(lr - 0.6, 0, None) ** 2
    sug = _result(lr, loss=loss).suggest(signal="loss")
    assert sug.signal == "loss"
    assert 0.5 * 0.55 <= sug.max_lr <= 0.5 * 0.65  # onset ~0.6, times the default backoff 0.5
    assert "x0.5" in sug.reasons["max_lr"]
    assert sug.base_lr < sug.max_lr


# ------------------------------------------------------------------ confidence


def test_bootstrap_spread_grows_with_noise():
    lr = np.linspace(0.0, 1.0, 200)
    clean = smith_curve(lr, fall_at=0.7)
    spreads = {}
    for sigma in (0.0, 0.2):
        noisy = clean + sigma * np.random.default_rng(0).standard_normal(200)
        sug = _result(lr, acc=noisy).suggest(bootstrap=100)
        for key in ("base_lr", "max_lr"):
            s = sug.spread[key]
            assert s.method == "bootstrap" and s.n == 100
            assert s.q25 <= s.median <= s.q75
        spreads[sigma] = (sug.spread["base_lr"].log10_iqr, sug.spread["max_lr"].log10_iqr)
    # without noise only the smoother's bias is resampled: a couple of rungs of the ladder at most
    rung = math.log10(1 + (lr[1] - lr[0]) / 0.38)
    assert spreads[0.0][1] <= 3 * rung
    assert spreads[0.2][0] > 2 * spreads[0.0][0] and spreads[0.2][1] > 2 * spreads[0.0][1]


def test_bootstrap_is_deterministic_for_a_seed():
    lr = np.linspace(0.0, 1.0, 150)
    acc = smith_curve(lr, fall_at=0.7) + 0.03 * np.random.default_rng(5).standard_normal(150)
    res = _result(lr, acc=acc)
    assert res.suggest(seed=1).to_dict() == res.suggest(seed=1).to_dict()


def test_repeats_report_median_and_spread():
    lr = np.linspace(0.0, 1.0, 200)
    runs = [_result(lr, acc=smith_curve(lr, centre=c, fall_at=0.8)) for c in (0.25, 0.3, 0.35)]
    singles = [r.suggest(bootstrap=0).max_lr for r in runs]
    res = runs[0]
    res.repeats = runs[1:]
    sug = res.suggest()
    assert sug.max_lr == pytest.approx(np.median(singles), rel=1e-9)
    s = sug.spread["max_lr"]
    assert s.method == "repeats" and s.n == 3
    assert s.q25 == pytest.approx(10 ** np.percentile(np.log10(singles), 25))
    assert s.log10_std == pytest.approx(np.std(np.log10(singles), ddof=1))
    assert "median of 3 runs" in sug.reasons["max_lr"]


def test_spread_of_values():
    s = Spread.of([1e-3, 1e-2, 1e-1, None, float("nan")], "repeats")
    assert s.n == 3 and s.median == pytest.approx(1e-2) and s.log10_iqr == pytest.approx(1.0)
    assert Spread.of([], "repeats") is None


def test_bad_options_and_signal():
    res = _result(np.linspace(0, 1, 50), acc=smith_curve(np.linspace(0, 1, 50)))
    with pytest.raises(ConfigError, match="signal"):
        res.suggest(signal="accuracy")
    with pytest.raises(ConfigError, match="backoff"):
        res.suggest(backoff=0.0)
    with pytest.raises(ConfigError, match="unknown suggest option"):
        res.suggest(options={"windw": 0.1})
    with pytest.raises(ConfigError, match="train_acc"):
        res.suggest(signal="train_acc")


# ------------------------------------------------------------------ smoothing


def test_ema_bias_correction_and_centred_window():
    x = np.full(10, 3.0)
    np.testing.assert_allclose(ema(x, 0.9), x)  # bias-corrected: a constant stays constant
    assert ema([1.0, 2.0], 0.0).tolist() == [1.0, 2.0]
    y = np.arange(11.0)
    np.testing.assert_allclose(centred_window(y, 5), y)  # centred: no lag on a line
    z = np.array([1.0, np.nan, 3.0])
    assert centred_window(z, 3)[1] == pytest.approx(2.0)


# ------------------------------------------------------------------ the stability model


@pytest.mark.parametrize(
    "mu,nesterov,want",
    [(0.0, False, 2.0), (0.9, False, 3.8), (0.5, False, 3.0), (0.9, True, 2 * 1.9 / 2.8)],
)
def test_critical_product_is_where_the_radius_crosses_one(mu, nesterov, want):
    a = critical_product(mu, 0.0, nesterov)
    assert a == pytest.approx(want)
    assert sgd_radius(a * 0.98, mu, 0.0, nesterov) < 1.0 < sgd_radius(a * 1.02, mu, 0.0, nesterov)


@pytest.mark.parametrize("mu,nesterov", [(0.0, False), (0.5, False), (0.9, False), (0.9, True)])
def test_edge_estimate_is_exact_on_a_simulated_blow_up(mu, nesterov):
    """Simulate torch SGD's recursion on a 2-direction quadratic over a rising ladder."""
    lam = np.array([4.0, 0.1])
    w = np.array([1.0, 1.0])
    buf = np.zeros(2)
    lrs = np.linspace(0.01, 5.0 * critical_product(mu, 0.0, nesterov) / lam[0], 200)
    losses = []
    for t, lr in enumerate(lrs):
        losses.append(0.5 * float(np.sum(lam * w * w)) + 0.01)
        if losses[-1] > 100 * min(losses):
            break
        g = lam * w
        buf = g.copy() if t == 0 else mu * buf + g
        w = w - lr * ((g + mu * buf) if nesterov else buf)
    n = len(losses)
    assert n < len(lrs)  # it blew up
    est = estimate_edge(
        lrs[:n],
        np.array(losses),
        {"type": "sgd", "momentum": mu, "dampening": 0.0, "nesterov": nesterov},
    )
    truth = critical_product(mu, 0.0, nesterov) / lam[0]
    assert est is not None
    assert est["lr"] == pytest.approx(truth, rel=0.05)
    assert est["curvature"] == pytest.approx(lam[0], rel=0.05)


def test_no_edge_without_a_blow_up_or_for_adaptive_optimizers():
    lr = np.linspace(0.1, 1.0, 20)
    flat = np.linspace(1.0, 0.5, 20)
    sgd = {"type": "sgd", "momentum": 0.0, "dampening": 0.0, "nesterov": False}
    assert estimate_edge(lr, flat, sgd) is None
    blow = np.concatenate([flat[:-2], [3.0, 30.0]])
    assert estimate_edge(lr, blow, sgd) is not None
    assert estimate_edge(lr, blow, None) is None


def test_local_linear_equals_savitzky_golay_order_1():
    from scipy.signal import savgol_filter

    rng = np.random.default_rng(0)
    for n, w in [(50, 5), (101, 11), (30, 29), (200, 21)]:
        y = rng.standard_normal(n).cumsum()
        np.testing.assert_allclose(
            local_linear(y, w), savgol_filter(y, w, 1, mode="interp"), atol=1e-9
        )


def test_wide_range_is_flagged_with_the_rule_of_thumb_but_not_changed():
    lr = np.geomspace(1e-4, 1.0, 200)
    x = np.log10(lr)
    acc = (
        0.1 + 0.6 / (1 + np.exp(-(x + 2.0) / 0.4)) - 0.5 * np.clip(x + 0.5, 0, None)
    )  # rise over 2 decades
    sug = _result(lr, acc=acc).suggest()
    assert sug.max_lr / sug.base_lr > 20
    (diag,) = [d for d in sug.diagnostics if d.code == "wide_range"]
    assert f"{sug.max_lr / 4:.3g}" in diag.message
    narrow = _result(lr, acc=acc).suggest(wide_range=1e6)
    assert "wide_range" not in narrow.codes and narrow.base_lr == sug.base_lr
