"""RALR: share amplified, factor bounds, determinism across processes and resumes, no carry-over."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from lrlab.schedules import Constant, RandomAmplify, from_config, paper_multistep, ralr_paper


def amplification(schedule, epochs):
    return schedule.values(np.arange(epochs)) / schedule.base.values(np.arange(epochs))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_share_amplified_within_three_sigma_and_factors_in_range(p, seed):
    epochs = 10_000
    s = RandomAmplify(base=Constant(lr=0.1), p=p, low=1.0, high=3.0, seed=seed)
    factors = amplification(s, epochs)
    amplified = factors != 1.0
    sigma = math.sqrt(p * (1 - p) / epochs)
    assert abs(amplified.mean() - p) < 3 * sigma
    assert factors.min() >= 1.0 and factors.max() <= 3.0
    # the factor is continuous over [low, high], not an integer draw
    u = factors[amplified]
    assert len(np.unique(u)) > 0.99 * len(u)
    assert abs(u.mean() - 2.0) < 3 * (2 / math.sqrt(12)) / math.sqrt(len(u))


def test_p0_never_and_p1_always_amplifies():
    base = paper_multistep(300)
    never = RandomAmplify(base=base, p=0.0)
    always = RandomAmplify(base=base, p=1.0, low=1.5, high=2.5)
    t = np.arange(300)
    assert np.array_equal(never.values(t), base.values(t))
    f = always.values(t) / base.values(t)
    assert np.all((f >= 1.5) & (f <= 2.5)) and np.all(f != 1.0)


def test_factor_constant_within_period_and_never_carries_over():
    steps_per_epoch = 7
    s = ralr_paper(40, steps_per_epoch=steps_per_epoch, seed=3)
    t = np.arange(40 * steps_per_epoch)
    f = (s.values(t) / s.base.values(t)).reshape(40, steps_per_epoch)
    assert np.allclose(f, f[:, :1], rtol=1e-14)
    # each epoch's lr is base * its own factor: an amplified epoch does not leak into the next
    per_epoch = f[:, 0]
    for e in range(1, 40):
        lr = s(e * steps_per_epoch)
        assert lr == pytest.approx(s.base(e * steps_per_epoch) * per_epoch[e], rel=1e-14)
    assert (per_epoch == 1.0).any() and (per_epoch > 1.0).any()


def test_paper_setup_milestones_and_period():
    s = ralr_paper(300)
    assert s.base.milestones == (150, 225) and s.base.lr == 0.1 and s.p == 0.5
    assert (s.low, s.high, s.period) == (1.0, 3.0, 1)


def test_same_values_in_a_separate_process():
    config = {
        "type": "ralr",
        "base": {"type": "cosine", "lr": 0.1, "total": 5000},
        "p": 0.5,
        "low": 1,
        "high": 3,
        "period": 13,
        "seed": 42,
    }
    code = (
        "import json, sys, lrlab; s = lrlab.from_config(json.loads(sys.argv[1]));"
        "print(json.dumps([s(t) for t in range(5000)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(config)], capture_output=True, text=True, check=True
    )
    theirs = json.loads(out.stdout)
    ours = [from_config(config)(t) for t in range(5000)]
    assert theirs == ours


def test_seeds_differ_and_a_seed_is_reproducible():
    a = RandomAmplify(base=Constant(lr=1.0), seed=1).values(500)
    b = RandomAmplify(base=Constant(lr=1.0), seed=2).values(500)
    again = RandomAmplify(base=Constant(lr=1.0), seed=1).values(500)
    assert not np.array_equal(a, b)
    assert np.array_equal(a, again)


def test_draws_are_independent_between_consecutive_epochs():
    f = amplification(RandomAmplify(base=Constant(lr=1.0), p=0.5, seed=9), 20_000)
    on = (f > 1.0).astype(float)
    lag1 = np.corrcoef(on[:-1], on[1:])[0, 1]
    assert abs(lag1) < 4 / math.sqrt(len(on))
