"""Numerics, stopping rules, data handling, validation and outputs of ``range_test``."""

from __future__ import annotations

import ast
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lrlab
from lrlab.errors import ConfigError
from lrlab.finder import MIN_STEPS, RangeTestResult, lr_ladder, range_test, repeat_range_test
from lrlab.schedules import Cyclic


def _blobs(n=600, d=10, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(classes, d, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    x = centres[y] + torch.randn(n, d, generator=g)
    return x, y


def _mlp(seed=0, d=10, classes=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, classes))


class CountingLoader:
    """A re-iterable of (x, y) batches that counts how many batches were drawn."""

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.bs = x, y, batch_size
        self.drawn = 0
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        for i in range(0, len(self.x), self.bs):
            self.drawn += 1
            yield self.x[i : i + self.bs], self.y[i : i + self.bs]


# ------------------------------------------------------------------ the ladder


@pytest.mark.parametrize("mode", ["linear", "exp"])
def test_ladder_is_evenly_spaced_and_recorded_per_optimizer_step(mode):
    x, y = _blobs()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    res = range_test(
        model,
        opt,
        nn.CrossEntropyLoss(),
        (x, y),
        start_lr=1e-3,
        end_lr=0.1,
        steps=30,
        mode=mode,
        diverge_factor=None,
    )
    assert res.stop_reason == "end" and len(res) == 30
    expected = lr_ladder(1e-3, 0.1, 30, mode)
    np.testing.assert_allclose(res.lr, expected, rtol=1e-12)
    assert res.lr[0] == pytest.approx(1e-3) and res.lr[-1] == pytest.approx(0.1)
    steps = np.diff(res.lr) if mode == "linear" else np.diff(np.log(res.lr))
    np.testing.assert_allclose(
        steps, steps[0], rtol=1e-9
    )  # constant increments (in log space for exp)


def test_lr_is_really_applied_to_every_param_group():
    x, y = _blobs()
    model = _mlp()
    opt = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 5.0}], lr=1.0
    )
    seen = []
    orig_step = opt.step

    def spy_step(*a, **k):
        seen.append([g["lr"] for g in opt.param_groups])
        return orig_step(*a, **k)

    opt.step = spy_step
    res = range_test(model, opt, nn.CrossEntropyLoss(), (x, y), start_lr=0.01, end_lr=0.2, steps=12)
    del opt.step
    assert len(seen) == len(res) == 12
    for lrs, want in zip(seen, res.lr):
        assert lrs == [pytest.approx(want), pytest.approx(want)]
    assert [g["lr"] for g in opt.param_groups] == [1.0, 5.0]  # restored afterwards


def test_gradient_accumulation_one_point_per_optimizer_step():
    x, y = _blobs(n=400)
    loader = CountingLoader(x, y, batch_size=20)  # 20 batches per pass
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    steps_taken = []
    orig = opt.step
    opt.step = lambda *a, **k: (steps_taken.append(1), orig(*a, **k))[1]
    res = range_test(
        model,
        opt,
        nn.CrossEntropyLoss(),
        loader,
        start_lr=1e-3,
        end_lr=1e-2,
        steps=15,
        accumulation_steps=3,
        diverge_factor=None,
    )
    del opt.step
    assert len(res) == 15 == len(steps_taken)
    assert loader.drawn == 45  # 3 micro-batches per point
    assert loader.passes >= 3  # the loader ran out and was restarted (cycled)


def test_accumulated_point_is_the_mean_of_its_micro_batch_losses():
    x, y = _blobs(n=64)
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with torch.no_grad():
        first_two = [nn.functional.cross_entropy(model(bx), by).item() for bx, by in batches[:2]]
    res = range_test(
        model,
        opt,
        nn.CrossEntropyLoss(),
        batches,
        start_lr=0.0,
        end_lr=1e-9,
        steps=10,
        accumulation_steps=2,
        metrics=None,
    )
    assert res.loss[0] == pytest.approx(np.mean(first_two), rel=1e-6)


# ------------------------------------------------------------------ stopping


def test_divergence_rule_stops_and_keeps_the_point():
    x, y = _blobs()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    res = range_test(
        model,
        opt,
        nn.CrossEntropyLoss(),
        (x, y),
        start_lr=1e-3,
        end_lr=1e4,
        steps=80,
        mode="exp",
        diverge_factor=3.0,
    )
    assert res.stop_reason in ("diverged", "nan")
    assert len(res) < 80
    if res.stop_reason == "diverged":
        assert res.smoothed_loss[-1] > 3.0 * np.min(res.smoothed_loss[:-1])
        assert np.all(
            res.smoothed_loss[:-1] <= 3.0 * np.minimum.accumulate(res.smoothed_loss[:-1]) + 1e-12
        )
        assert res.stop_lr == res.lr[-1]


def test_nan_loss_is_cut_off():
    x, y = _blobs()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    calls = {"n": 0}

    def loss_fn(out, t):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(out, t)
        return loss * float("nan") if calls["n"] == 13 else loss

    res = range_test(
        model, opt, loss_fn, (x, y), start_lr=1e-3, end_lr=1e-2, steps=40, diverge_factor=None
    )
    assert res.stop_reason == "nan"
    assert len(res) == 12 and np.isfinite(res.loss).all()
    assert res.stop_lr == pytest.approx(lr_ladder(1e-3, 1e-2, 40)[12])
    sug = res.suggest()
    assert "nan" in sug.codes


def test_one_shot_iterator_ends_the_test():
    x, y = _blobs(n=200)
    it = iter([(x[i : i + 20], y[i : i + 20]) for i in range(0, 200, 20)])  # 10 batches
    model = _mlp()
    res = range_test(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        nn.CrossEntropyLoss(),
        it,
        start_lr=1e-3,
        end_lr=1e-2,
        steps=25,
    )
    assert res.stop_reason == "end_of_data" and len(res) == 10


# ------------------------------------------------------------------ metrics and data


def test_accuracy_by_default_and_budgeted_validation():
    x, y = _blobs()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    res = range_test(
        model,
        opt,
        nn.CrossEntropyLoss(),
        (x[:500], y[:500]),
        val_data=(x[500:], y[500:]),
        start_lr=1e-3,
        end_lr=0.5,
        steps=40,
        val_every=5,
        val_samples=50,
        batch_size=50,
    )
    assert {"train_acc", "val_acc", "val_loss"} <= set(res.metrics)
    evaluated = np.nonzero(np.isfinite(res.metrics["val_acc"]))[0]
    want = [i for i in range(len(res)) if i % 5 == 0 or i == 39]
    assert list(evaluated) == [i for i in want if i < len(res)]
    # accuracy on a budget of 50 samples is a multiple of 1/50; train accuracy of 50-row batches too
    assert np.allclose(
        res.metrics["val_acc"][evaluated] * 50, np.round(res.metrics["val_acc"][evaluated] * 50)
    )
    assert np.all((res.metrics["train_acc"] >= 0) & (res.metrics["train_acc"] <= 1))
    # the model learns over the sweep: accuracy at the end beats chance (0.25) clearly
    assert np.nanmax(res.metrics["val_acc"]) > 0.6


def test_regression_has_no_accuracy_and_custom_metrics_work():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = x @ torch.randn(5, 1, generator=g)
    model = nn.Linear(5, 1)
    res = range_test(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        nn.MSELoss(),
        (x, y),
        start_lr=1e-3,
        end_lr=0.1,
        steps=12,
        metrics={"mae": lambda out, t: (out - t).abs().mean().item()},
    )
    assert "train_acc" not in res.metrics and "train_mae" in res.metrics
    assert np.all(np.isfinite(res.metrics["train_mae"]))
    res2 = range_test(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        nn.MSELoss(),
        (x, y),
        start_lr=1e-3,
        end_lr=0.1,
        steps=12,
    )
    assert res2.metrics == {}


def test_tensor_pair_batching_is_seeded_and_repeats_differ():
    x, y = _blobs()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    kw = dict(start_lr=1e-3, end_lr=0.3, steps=20, batch_size=32)
    a = range_test(model, opt, nn.CrossEntropyLoss(), (x, y), seed=5, **kw)
    b = range_test(model, opt, nn.CrossEntropyLoss(), (x, y), seed=5, **kw)
    np.testing.assert_array_equal(a.loss, b.loss)  # same seed, same state -> same curve
    c = repeat_range_test(model, opt, nn.CrossEntropyLoss(), (x, y), repeats=3, seed=5, **kw)
    assert [r.config["seed"] for r in c.runs] == [5, 6, 7]
    np.testing.assert_array_equal(c.loss, a.loss)
    assert not np.array_equal(c.runs[1].loss, c.runs[2].loss)  # other data orders
    same = range_test(model, opt, nn.CrossEntropyLoss(), (x, y), seeds=[5, 5], **kw)
    np.testing.assert_array_equal(
        same.runs[0].loss, same.runs[1].loss
    )  # each repeat starts from the same state


def test_dataloader_input():
    x, y = _blobs()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True
    )
    model = _mlp()
    res = range_test(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        nn.CrossEntropyLoss(),
        loader,
        val_data=torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=100),
        start_lr=1e-3,
        end_lr=1.0,
        steps=20,
        val_samples=150,
    )
    assert len(res) == 20 and "val_acc" in res.metrics


# ------------------------------------------------------------------ validation

BAD = [
    (dict(start_lr=0.1, end_lr=0.1), "start_lr"),
    (dict(start_lr=1.0, end_lr=0.1), "start_lr"),
    (dict(steps=MIN_STEPS - 1), "steps"),
    (dict(steps=20.0), "steps"),
    (dict(mode="cosine"), "mode"),
    (dict(mode="exp", start_lr=0.0), "start_lr"),
    (dict(start_lr=float("nan")), "start_lr"),
    (dict(accumulation_steps=0), "accumulation_steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(diverge_factor=1.0), "diverge_factor"),
    (dict(ema_beta=1.0), "ema_beta"),
    (dict(val_every=0), "val_every"),
    (dict(repeats=0), "repeats"),
    (dict(metrics="accuracy"), "metrics"),
]


@pytest.mark.parametrize("override,field", BAD, ids=[f for _, f in BAD])
def test_bad_arguments_raise_config_error_before_training(override, field):
    x, y = _blobs(n=50)
    model = _mlp()
    before = [p.detach().clone() for p in model.parameters()]
    called = []

    def loss_fn(o, t):
        called.append(1)
        return nn.functional.cross_entropy(o, t)

    kw = dict(start_lr=1e-3, end_lr=1.0, steps=20, mode="linear")
    kw.update(override)
    with pytest.raises(ConfigError) as err:
        range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, (x, y), **kw)
    assert isinstance(err.value, ValueError)
    assert field in str(err.value)
    assert not called
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_bad_mode_message_lists_allowed_values():
    x, y = _blobs(n=50)
    model = _mlp()
    with pytest.raises(ConfigError, match="linear, exp"):
        range_test(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            nn.CrossEntropyLoss(),
            (x, y),
            start_lr=1e-3,
            end_lr=1.0,
            steps=20,
            mode="geometric",
        )


def test_bad_data_raises_config_error():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="train_data"):
        range_test(
            model,
            opt,
            nn.CrossEntropyLoss(),
            (torch.zeros(5, 10), torch.zeros(4)),
            start_lr=1e-3,
            end_lr=1.0,
            steps=20,
        )
    with pytest.raises(ConfigError, match="train_data"):
        range_test(model, opt, nn.CrossEntropyLoss(), 42, start_lr=1e-3, end_lr=1.0, steps=20)
    with pytest.raises(ConfigError, match="val_data"):
        range_test(
            model,
            opt,
            nn.CrossEntropyLoss(),
            _blobs(),
            val_data=iter([]),
            start_lr=1e-3,
            end_lr=1.0,
            steps=20,
        )


# ------------------------------------------------------------------ outputs


@pytest.fixture(scope="module")
def repeated_result():
    x, y = _blobs()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    return range_test(
        model,
        opt,
        nn.CrossEntropyLoss(),
        (x[:500], y[:500]),
        val_data=(x[500:], y[500:]),
        start_lr=1e-3,
        end_lr=30.0,
        steps=60,
        mode="exp",
        repeats=3,
        batch_size=50,
        val_every=1,
    )


def test_json_round_trip_and_no_nan_tokens(repeated_result, tmp_path):
    res = repeated_result
    path = tmp_path / "rt.json"
    text = res.to_json(path)
    assert path.read_text().strip() == text.strip()
    assert "NaN" not in text and "Infinity" not in text
    d = json.loads(text)
    assert d["format"] == "lrlab.range_test" and d["stop_reason"] == res.stop_reason
    assert len(d["points"]) == len(res) and len(d["repeats"]) == 2
    assert set(d["suggestion"]) >= {"base_lr", "max_lr", "lr", "reasons", "spread", "diagnostics"}
    back = RangeTestResult.from_json(path)
    np.testing.assert_array_equal(back.lr, res.lr)
    np.testing.assert_array_equal(back.loss, res.loss)
    for k in res.metrics:
        np.testing.assert_array_equal(back.metrics[k], res.metrics[k])
    assert back.suggest().to_dict() == res.suggest().to_dict()


def test_csv_has_one_row_per_run_and_step(repeated_result, tmp_path):
    res = repeated_result
    text = res.to_csv(tmp_path / "rt.csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == sum(len(r) for r in res.runs)
    assert {"run", "step", "lr", "loss", "smoothed_loss", "train_acc", "val_acc"} <= set(rows[0])
    assert float(rows[3]["lr"]) == res.lr[3]


def test_plot_writes_png(repeated_result, tmp_path):
    out = tmp_path / "rt.png"
    fig = repeated_result.plot(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any(lab.startswith("max_lr") for lab in labels) and any(
        lab.startswith("base_lr") for lab in labels
    )


def test_suggestion_from_repeats_has_spread_and_feeds_from_config(repeated_result):
    sug = repeated_result.suggest()
    assert sug.ok and sug.n_runs == 3 and sug.signal == "val_acc"
    assert 1e-3 <= sug.base_lr < sug.max_lr <= 30.0
    assert sug.base_lr <= sug.lr <= sug.max_lr
    for key in ("base_lr", "max_lr"):
        s = sug.spread[key]
        assert s.method == "repeats" and s.n == 3 and s.q25 <= s.median <= s.q75
        assert s.log10_iqr >= 0 and s.log10_std >= 0
        assert sug.reasons[key]
    cfg = sug.to_cyclic_config(step_size_up=40)
    # built by the cyclic schedule itself: its own config, with the suggested bounds
    assert (
        cfg
        == Cyclic(
            base_lr=sug.base_lr, max_lr=sug.max_lr, step_size_up=40, mode="triangular2"
        ).to_config()
    )
    assert {
        "type": "cyclic",
        "mode": "triangular2",
        "base_lr": sug.base_lr,
        "max_lr": sug.max_lr,
        "step_size_up": 40,
    }.items() <= cfg.items()
    sched = lrlab.from_config(cfg)
    assert sched(0) == pytest.approx(sug.base_lr) and sched(40) == pytest.approx(sug.max_lr)
    with pytest.raises(ConfigError, match="step_size_up"):
        sug.to_cyclic_config(step_size_up=0)


def test_top_level_lazy_export():
    assert lrlab.range_test is range_test


def test_finder_never_imports_lab_or_cli():
    root = Path(lrlab.__file__).parent / "finder"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("lrlab.lab", "lrlab.cli")), (
                    f"{path.name} imports {name}"
                )


def test_result_repr_and_available_signals(repeated_result):
    assert "RangeTestResult(" in repr(repeated_result)
    assert repeated_result.available_signals()[0] == "val_acc"
    assert math.isfinite(repeated_result.elapsed_s)
