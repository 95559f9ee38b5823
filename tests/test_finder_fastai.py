"""fastai's ``lr_find`` suggestions (valley, steep, minimum) against fastai's own definitions.

fastai is not installed, so the reference below is a literal transcription of the formulas of
``fastai.callback.schedule`` (v2): ``AvgSmoothLoss`` (``val = lerp(loss, val, 0.98)``, reported as
``val / (1 - 0.98 ** count)``), ``lr_find``'s trimming (``[num_it // 10 : -5]``, then cut at the
first NaN), the O(n^2) longest-valley loop, the steepest log-slope and the minimum / 10. The
library computes the valley differently (patience sorting), so agreement is a real check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.finder import RangeTestResult
from lrlab.finder.fastai import fastai_curve, fastai_readings, steep_index, valley_index

# ------------------------------------------------------------------ the reference (fastai's formulas)


def ref_smooth(losses, beta=0.98):
    val, out = 0.0, []
    for count, loss in enumerate(losses, start=1):
        val = beta * val + (1 - beta) * loss  # torch.lerp(loss, val, beta)
        out.append(val / (1 - beta**count))
    return out


def ref_trim(lrs, losses, num_it):
    lrs, losses = list(lrs)[num_it // 10 : -5], list(losses)[num_it // 10 : -5]
    nan = [i for i, v in enumerate(losses) if math.isnan(v)]
    if nan:
        lrs, losses = lrs[: min(nan)], losses[: min(nan)]
    return lrs, losses


def ref_valley(lrs, losses):
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def ref_steep(lrs, losses):
    grads = [
        (losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i]))
        for i in range(len(lrs) - 1)
    ]
    return float(lrs[grads.index(min(grads))])


def ref_minimum(lrs, losses):
    return float(lrs[losses.index(min(losses))]) / 10


def reference(lrs, raw_losses, num_it):
    lrs, losses = ref_trim(lrs, ref_smooth(raw_losses), num_it)
    return {
        "valley": ref_valley(lrs, losses),
        "steep": ref_steep(lrs, losses),
        "minimum": ref_minimum(lrs, losses),
    }


# ------------------------------------------------------------------ fixed curves


def _curves():
    n = 100
    lr = np.geomspace(1e-7, 10.0, n)
    x = np.log10(lr)
    rng = np.random.default_rng(3)
    u_shape = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 2)) + 0.2 * np.clip(x + 1, 0, None) ** 3
    return {
        "u_shape": (lr, u_shape),
        "u_shape_noisy": (lr, u_shape + 0.05 * rng.standard_normal(n)),
        "falling": (lr, np.linspace(3.0, 1.0, n)),
        "rising": (lr, np.linspace(1.0, 3.0, n)),
        "two_valleys": (lr, 1.5 + np.sin(3 * x) * 0.4 - 0.02 * x),
        "blow_up": (
            lr[:70],
            np.concatenate([np.linspace(2.3, 0.5, 60), np.geomspace(0.6, 40, 10)]),
        ),
    }


@pytest.mark.parametrize("name", list(_curves()))
def test_readings_equal_fastai_on_fixed_curves(name):
    lr, loss = _curves()[name]
    want = reference(lr, loss, num_it=100)
    got = fastai_readings(lr, loss, steps=100)
    for key, value in want.items():
        assert got[key].lr == pytest.approx(value, rel=1e-12), key
        assert f"{got[key].lr if key != 'minimum' else value * 10:.4g}" in got[key].reason


def test_trimming_and_smoothing_are_fastais():
    lr = np.geomspace(1e-3, 1.0, 40)
    loss = np.linspace(2.0, 1.0, 40)
    rates, smooth = fastai_curve(lr, loss, 40)
    want_lr, want_loss = ref_trim(lr, ref_smooth(loss), 40)
    np.testing.assert_allclose(rates, want_lr, rtol=0, atol=0)
    np.testing.assert_allclose(smooth, want_loss, rtol=1e-12)
    assert len(rates) == 40 - 4 - 5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=60))
def test_valley_index_equals_the_quadratic_loop(values):
    """Ties included (small integers): strictly falling, as fastai's ``<``."""
    lrs = list(range(len(values)))
    assert float(lrs[valley_index(values)[0]]) == ref_valley(lrs, values)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.01, 10.0), min_size=2, max_size=40))
def test_steep_index_equals_fastai(values):
    lrs = np.geomspace(1e-4, 1.0, len(values))
    assert float(lrs[steep_index(lrs, values)]) == ref_steep(list(lrs), values)


def test_short_curves_give_no_reading_and_say_why():
    lr = np.geomspace(1e-3, 1.0, 12)
    got = fastai_readings(lr[:6], np.ones(6), steps=12)
    assert all(r.lr is None for r in got.values())
    assert "5 points" in got["valley"].reason or "last 5" in got["valley"].reason


def _result(lr, loss, **config):
    return RangeTestResult(
        lr=np.asarray(lr, float),
        loss=np.asarray(loss, float),
        smoothed_loss=np.asarray(loss, float),
        metrics={},
        stop_reason="end",
        stop_lr=float(lr[-1]),
        config={"mode": "exp", "steps": len(lr), **config},
    )


def test_suggestion_offers_them_beside_the_bounds_with_reasons():
    lr, loss = _curves()["u_shape_noisy"]
    sug = _result(lr, loss).suggest()
    want = reference(lr, loss, num_it=100)
    assert sug.fastai == pytest.approx(want, rel=1e-12)
    for key in want:
        assert sug.reasons[key].startswith(f"fastai's {key}")
    d = sug.to_dict()
    assert d["fastai"] == sug.fastai and "valley" in str(sug)


def test_repeats_report_the_median_of_the_runs_and_quote_it():
    curves = _curves()
    lr = curves["u_shape"][0]
    runs = [
        _result(lr, curves["u_shape"][1] + shift) for shift in (0.0, 0.01, 0.02)
    ]  # same shape: same readings
    noisy = _result(lr, curves["u_shape_noisy"][1])
    first = runs[0]
    first.repeats = [noisy, runs[2]]
    per_run = [reference(lr, r.loss, 100) for r in first.runs]
    sug = first.suggest()
    for key in ("valley", "steep", "minimum"):
        values = [p[key] for p in per_run]
        median = 10 ** np.median(np.log10(values))
        assert sug.fastai[key] == pytest.approx(median, rel=1e-9)
        assert sug.reasons[key].startswith(f"median of 3 runs = {median:.4g}")
        assert sug.spread[key].n == 3
