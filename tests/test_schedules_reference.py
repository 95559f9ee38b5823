"""Every formula against an independent reference: torch's schedulers, METHODS.md, hand values."""

import math

import numpy as np
import pytest
import torch
from helpers import assert_rel, torch_values

from lrlab.schedules import (
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    DecayingSequence,
    Exponential,
    KDecay,
    MultiStep,
    Polynomial,
    Step,
    from_config,
)

CLR_CASES = [
    (mode, up, down)
    for mode in ("triangular", "triangular2", "exp_range")
    for up, down in ((2000, 2000), (1500, 3700))
]


@pytest.mark.parametrize("mode,up,down", CLR_CASES)
def test_cyclic_matches_torch_cycliclr_over_100k_steps(mode, up, down):
    steps = 100_000
    gamma = 0.99997
    ours = Cyclic(
        base_lr=0.001, max_lr=0.006, step_size_up=up, step_size_down=down, mode=mode, gamma=gamma
    )
    expected = torch_values(
        lambda o: torch.optim.lr_scheduler.CyclicLR(
            o,
            base_lr=0.001,
            max_lr=0.006,
            step_size_up=up,
            step_size_down=down,
            mode=mode,
            gamma=gamma,
            cycle_momentum=False,
        ),
        steps,
    )
    assert_rel(ours.values(steps), expected, 1e-12)
    # the per-step (Python float) path agrees with the vectorised one
    sample = np.arange(0, steps, 997)
    assert_rel([ours(t) for t in sample], expected[sample], 1e-12)


def test_cyclic_reproduces_pytorch_test_vector():
    c = Cyclic(base_lr=1, max_lr=5, step_size_up=4, mode="triangular")
    assert [c(t) for t in range(11)] == [1, 2, 3, 4, 5, 4, 3, 2, 1, 2, 3]


def test_cyclic_triangular2_halves_amplitude_each_cycle():
    c = Cyclic(base_lr=0.0, max_lr=8.0, step_size_up=5, step_size_down=5, mode="triangular2")
    peaks = [c(5 + 10 * k) for k in range(4)]
    assert peaks == [8.0, 4.0, 2.0, 1.0]


@pytest.mark.parametrize(
    "ours,make",
    [
        (
            Step(lr=0.3, step_size=7, gamma=0.5),
            lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5),
        ),
        (
            MultiStep(lr=0.3, milestones=(10, 25, 60), gamma=0.2),
            lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[10, 25, 60], gamma=0.2),
        ),
        (
            Exponential(lr=0.3, gamma=0.97),
            lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.97),
        ),
        (
            Polynomial(lr=0.3, total=80, power=2.0),
            lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=80, power=2.0),
        ),
        (
            Cosine(lr=0.3, end_lr=0.01, total=90),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=90, eta_min=0.01),
        ),
        (
            CosineRestarts(lr=0.3, end_lr=0.01, period=10, period_mult=1),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                o, T_0=10, T_mult=1, eta_min=0.01
            ),
        ),
        (
            CosineRestarts(lr=0.3, end_lr=0.01, period=10, period_mult=2),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                o, T_0=10, T_mult=2, eta_min=0.01
            ),
        ),
        (
            CosineRestarts(lr=0.3, end_lr=0.0, period=3, period_mult=3),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=3),
        ),
    ],
    ids=[
        "step",
        "multistep",
        "exponential",
        "polynomial",
        "cosine",
        "sgdr",
        "sgdr-mult2",
        "sgdr-mult3",
    ],
)
def test_classic_schedules_match_torch(ours, make):
    steps = 90 if isinstance(ours, Cosine) else 400  # torch's recursive cosine climbs after T_max
    expected = torch_values(make, steps, lr=0.3)
    # torch's recursive forms accumulate rounding; our closed forms do not
    assert_rel(ours.values(steps), expected, 1e-9)
    assert_rel([ours(t) for t in range(steps)], expected, 1e-9)


def test_cosine_and_polynomial_hold_their_end_value_after_the_horizon():
    assert Cosine(lr=1.0, end_lr=0.1, total=10)(25) == 0.1
    assert Polynomial(lr=1.0, end_lr=0.1, total=10, power=3.0)(25) == 0.1


def test_constant_is_constant():
    assert set(Constant(lr=0.25).values(1000)) == {0.25}


# ---------------------------------------------------------------------------------- k-decay


@pytest.mark.parametrize("k", [1.0, 1.5, 2.0, 3.0])
def test_kdecay_warp_on_cosine_equals_methods_formula(k):
    eta0, eta_e, T = 0.1, 0.001, 1000
    s = KDecay(base=Cosine(lr=eta0, end_lr=eta_e, total=T), k=k, form="warp")
    t = np.arange(T + 1, dtype=float)
    expected = eta_e + (eta0 - eta_e) * (1 + np.cos(np.pi * t**k / T**k)) / 2
    np.testing.assert_allclose(s.values(t), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("k", [1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_kdecay_warp_on_polynomial_equals_methods_formula(k, power):
    eta0, eta_e, T = 0.1, 0.001, 1000
    s = KDecay(base=Polynomial(lr=eta0, end_lr=eta_e, total=T, power=power), k=k, form="warp")
    t = np.arange(T + 1, dtype=float)
    expected = eta_e + (eta0 - eta_e) * (1 - t**k / T**k) ** power
    np.testing.assert_allclose(s.values(t), expected, rtol=1e-12, atol=1e-15)


def test_kdecay_warp_on_exponential_substitutes_in_the_exponent():
    s = KDecay(base=Exponential(lr=0.1, gamma=0.995), k=2.0, total=500)
    t = np.arange(501, dtype=float)
    np.testing.assert_allclose(s.values(t), 0.1 * 0.995 ** (t**2 / 500), rtol=1e-12)


@pytest.mark.parametrize("form", ["warp", "additive"])
@pytest.mark.parametrize(
    "base",
    [
        Cosine(lr=0.1, end_lr=0.001, total=777),
        Polynomial(lr=0.1, end_lr=0.0, total=500, power=2.0),
        Step(lr=0.1, step_size=30, gamma=0.5),
    ],
    ids=["cosine", "poly", "step"],
)
def test_kdecay_with_k1_is_the_base_bit_for_bit(form, base):
    s = KDecay(base=base, k=1.0, form=form, total=base.horizon or 300)
    t = np.arange(1200)
    assert np.array_equal(s.values(t), base.values(t))
    assert all(s(i) == base(i) for i in range(0, 1200, 7))


@pytest.mark.parametrize("k", [1.0, 1.5, 2.0, 3.0, 5.0, 8.0])
def test_kdecay_additive_on_linear_equals_closed_form_and_never_rises(k):
    eta0, eta_e, T = 0.1, 0.001, 1000
    s = KDecay(base=Polynomial(lr=eta0, end_lr=eta_e, total=T), k=k, form="additive")
    x = np.arange(T + 1) / T
    values = s.values(np.arange(T + 1))
    np.testing.assert_allclose(values, eta_e + (eta0 - eta_e) * (1 - x**k), rtol=1e-12, atol=1e-15)
    assert np.all(np.diff(values) <= 1e-15)
    assert values.min() >= eta_e - 1e-15


def test_kdecay_printed_sign_would_go_negative_which_is_why_methods_flips_it():
    # METHODS.md: with the paper's printed sign, 1 - 2x + x^3 < 0 at x = 0.9 (k = 3)
    x = 0.9
    assert 1 - 2 * x + x**3 < 0
    s = KDecay(base=Polynomial(lr=1.0, end_lr=0.0, total=10), k=3.0, form="additive")
    assert s(9) == pytest.approx(1 - x**3)


# ------------------------------------------------------------------------------- sequences


def test_seq4_pops_match_methods():
    s = DecayingSequence(kind="seq4", lr=0.01)
    assert s.value(10) == pytest.approx(0.1 * 0.01, rel=1e-15)
    assert s.value(11) == pytest.approx(0.5 * 0.01, rel=1e-15)
    assert s.value(20) == pytest.approx(0.05 * 0.01, rel=1e-15)
    assert s.value(21) == pytest.approx(0.01 / 3, rel=1e-15)
    assert s.value(50) == pytest.approx(0.02 * 0.01, rel=1e-15)


def test_sequences_hand_values():
    r0 = 0.01
    for i in range(1, 60):
        assert DecayingSequence(kind="seq1", lr=r0).value(i) == pytest.approx(r0 / (i + 1))
        assert DecayingSequence(kind="seq2", lr=r0).value(i) == pytest.approx(r0 / math.sqrt(i + 1))
        assert DecayingSequence(kind="seq3", lr=r0).value(i) == pytest.approx(r0 * 0.9**i)
        slides = DecayingSequence(kind="seq4_slides", lr=r0).value(i)
        assert slides == pytest.approx(r0 * (1 - ((i - 1) % 10) / 10) / (i // 10 + 1))
    assert all(
        DecayingSequence(kind=k, lr=r0).value(0) == r0 for k in ("seq1", "seq2", "seq3", "seq4")
    )


def test_sequence_by_epoch_pops_once_per_period_and_stays_at_last_value_with_length():
    s = DecayingSequence(kind="seq3", lr=1.0, period=3, length=2)
    assert [s(t) for t in range(10)] == [1.0] * 3 + [0.9] * 3 + [0.81] * 4


def test_geometric_sequence():
    s = from_config({"type": "sequence", "kind": "geometric", "lr": 0.5, "gamma": 0.5})
    assert [s.value(i) for i in range(4)] == [0.5, 0.25, 0.125, 0.0625]


def test_triangular2_far_past_1024_cycles_decays_to_base_instead_of_overflowing():
    # torch's 1 / 2.0 ** (cycle - 1) raises OverflowError after 1024 cycles; the amplitude is 0
    c = Cyclic(base_lr=0.5, max_lr=1.5, step_size_up=1, mode="triangular2")
    assert c(2 * 5000 + 1) == 0.5
    assert c.values([2 * 5000 + 1])[0] == 0.5
