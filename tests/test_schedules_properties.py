"""Property tests: bounds, monotonicity, k = 1 identities, determinism, round trips."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.schedules import (
    Cosine,
    Cyclic,
    DecayingSequence,
    KDecay,
    Polynomial,
    RandomAmplify,
    from_config,
)

lrs = st.floats(min_value=1e-6, max_value=10.0, allow_nan=False)
horizons = st.integers(min_value=1, max_value=5000)
ks = st.floats(min_value=1.0, max_value=8.0)
steps = st.lists(st.integers(min_value=0, max_value=20_000), min_size=1, max_size=50)


@st.composite
def decaying(draw):
    lr = draw(lrs)
    end = draw(st.floats(min_value=0.0, max_value=1.0)) * lr
    total = draw(horizons)
    if draw(st.booleans()):
        return Cosine(lr=lr, end_lr=end, total=total)
    return Polynomial(lr=lr, end_lr=end, total=total, power=draw(st.floats(0.1, 5.0)))


@st.composite
def any_schedule(draw):
    base = draw(decaying())
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return base
    if choice == 1:
        return KDecay(base=base, k=draw(ks), form=draw(st.sampled_from(["warp", "additive"])))
    if choice == 2:
        return RandomAmplify(
            base=base,
            p=draw(st.floats(0, 1)),
            low=1.0,
            high=draw(st.floats(1, 4)),
            period=draw(st.integers(1, 50)),
            seed=draw(st.integers(0, 2**32 - 1)),
        )
    if choice == 3:
        lo = draw(lrs)
        return Cyclic(
            base_lr=lo,
            max_lr=lo * draw(st.floats(1, 10)),
            step_size_up=draw(st.integers(1, 500)),
            step_size_down=draw(st.integers(1, 500)),
            mode=draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
            gamma=draw(st.floats(0.9, 1.0)),
        )
    if choice == 4:
        return DecayingSequence(
            kind=draw(st.sampled_from(["seq1", "seq2", "seq3", "seq4", "seq4_slides"])),
            lr=draw(lrs),
            period=draw(st.integers(1, 100)),
        )
    return base.with_warmup(draw(st.integers(1, 300)))


@settings(max_examples=150, deadline=None)
@given(any_schedule(), steps)
def test_round_trip_and_scalar_equals_vectorised(schedule, ts):
    again = from_config(schedule.to_config())
    assert again == schedule
    vec = schedule.values(ts)
    for t, v in zip(ts, vec):
        scalar = schedule(t)
        assert math.isfinite(scalar) and scalar >= 0
        assert scalar == again(t)  # deterministic, no hidden state
        assert math.isclose(scalar, v, rel_tol=1e-12, abs_tol=1e-300)


@settings(max_examples=100, deadline=None)
@given(decaying())
def test_decaying_schedules_stay_in_bounds_and_never_rise(s):
    v = s.values(np.arange(s.total + 50))
    assert np.all(np.diff(v) <= 1e-15 * s.lr)
    assert math.isclose(v[0], s.lr, rel_tol=1e-15) and abs(v[-1] - s.end_lr) <= 1e-15 * s.lr
    assert v.min() >= s.end_lr - 1e-15 * s.lr and v.max() <= s.lr * (1 + 1e-15)


@settings(max_examples=100, deadline=None)
@given(decaying(), ks)
def test_kdecay_warp_keeps_endpoints_and_never_rises(s, k):
    kd = KDecay(base=s, k=k, form="warp")
    v = kd.values(np.arange(s.total + 1))
    assert math.isclose(v[0], s(0), rel_tol=1e-15)
    assert math.isclose(v[-1], s(s.total), rel_tol=1e-12, abs_tol=1e-15)
    assert np.all(np.diff(v) <= 1e-15 * s.lr)
    # a larger k keeps the rate high for longer: the warp lies above the base
    assert np.all(v >= s.values(np.arange(s.total + 1)) - 1e-15 * s.lr)


@settings(max_examples=100, deadline=None)
@given(decaying())
def test_k_equal_one_is_identity_in_both_forms(s):
    t = np.arange(0, s.total + 20)
    for form in ("warp", "additive"):
        assert np.array_equal(KDecay(base=s, k=1.0, form=form).values(t), s.values(t))


@settings(max_examples=100, deadline=None)
@given(
    lrs,
    st.integers(1, 200),
    st.integers(1, 200),
    st.sampled_from(["triangular", "triangular2", "exp_range"]),
    st.lists(st.integers(0, 100_000), min_size=1, max_size=30),
)
def test_cyclic_stays_between_base_and_max(lo, up, down, mode, ts):
    c = Cyclic(
        base_lr=lo, max_lr=3 * lo, step_size_up=up, step_size_down=down, mode=mode, gamma=0.999
    )
    for t in ts:
        assert lo * (1 - 1e-12) <= c(t) <= 3 * lo * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["seq1", "seq2", "seq3", "seq4"]), lrs)
def test_sequences_are_positive_and_bounded_by_r0(kind, r0):
    s = DecayingSequence(kind=kind, lr=r0)
    v = [s.value(i) for i in range(200)]
    assert all(0 < x <= r0 * (1 + 1e-15) for x in v)
    if kind != "seq4":  # seq4 is a sawtooth by design
        assert all(a >= b for a, b in zip(v, v[1:]))
