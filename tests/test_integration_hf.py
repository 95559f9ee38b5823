"""Hugging Face ``Trainer(optimizers=(opt, lrlab_scheduler))``: the logged learning rates are lrlab's.

The Trainer calls ``scheduler.step()`` after every optimizer step and logs (``logging_steps=1``)
the rate the step used, so log entry ``k`` (1-based ``step``) holds ``schedule(k - 1)``. A
metric-driven policy gets its metric from a small ``TrainerCallback`` (the Trainer feeds a metric
only to ``ReduceLROnPlateau``). Nothing is downloaded: the model is built in the test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install 'lrlab[integrations]')"
)
pytest.importorskip(
    "accelerate", reason="the HF Trainer needs accelerate (pip install 'lrlab[integrations]')"
)

from helpers import RecordingTrial  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

import lrlab  # noqa: E402
from lrlab.schedules import Cosine, Cyclic, RandomAmplify  # noqa: E402
from lrlab.torch import Scheduler  # noqa: E402

STEPS = 24


class TinyRegressor(torch.nn.Module):
    """A model the Trainer accepts: ``forward(**batch)`` returns a dict with ``loss``."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
        )

    def forward(self, x, labels=None):
        out = self.net(x)
        loss = None if labels is None else torch.nn.functional.mse_loss(out, labels)
        return {"loss": loss, "logits": out}


class TinyDataset(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=g)
        self.y = self.x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def _args(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        max_steps=STEPS,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def _logged_lrs(trainer):
    rows = [row for row in trainer.state.log_history if "learning_rate" in row]
    return [row["step"] for row in rows], [row["learning_rate"] for row in rows]


RALR = RandomAmplify(base=Cosine(lr=0.05, total=STEPS, end_lr=0.001), p=0.5, period=1, seed=9)
CLR = Cyclic(base_lr=0.001, max_lr=0.02, step_size_up=5, mode="triangular2")


@pytest.mark.parametrize("schedule", [RALR, CLR], ids=["ralr", "clr"])
def test_trainer_logs_lrlab_learning_rates(tmp_path, schedule):
    torch.manual_seed(0)
    model = TinyRegressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = Trainer(
        model=model,
        args=_args(tmp_path),
        train_dataset=TinyDataset(64, 0),
        optimizers=(opt, Scheduler(opt, schedule)),
    )
    result = trainer.train()
    assert result.global_step == STEPS
    steps, lrs = _logged_lrs(trainer)
    assert steps == list(range(1, STEPS + 1))
    assert lrs == pytest.approx([schedule(k - 1) for k in steps], rel=1e-12)
    assert sum(a != b for a, b in zip(lrs, lrs[1:])) >= STEPS - 3  # the rate moved at every step


def test_resume_from_checkpoint_continues_the_schedule(tmp_path):
    """The Trainer saves ``scheduler.state_dict()`` and reloads it on resume (weights_only-safe)."""

    def run(resume):
        torch.manual_seed(0)
        model = TinyRegressor()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        trainer = Trainer(
            model=model,
            args=_args(tmp_path, save_strategy="steps", save_steps=10),
            train_dataset=TinyDataset(64, 0),
            optimizers=(opt, Scheduler(opt, RALR)),
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    run(None)
    checkpoint = tmp_path / "out" / "checkpoint-10"
    assert (checkpoint / "scheduler.pt").is_file()
    trainer = run(str(checkpoint))
    steps, lrs = _logged_lrs(trainer)
    resumed = [(s, lr) for s, lr in zip(steps, lrs) if s > 10]
    assert [s for s, _ in resumed] == list(range(11, STEPS + 1))
    assert [lr for _, lr in resumed] == pytest.approx([RALR(s - 1) for s, _ in resumed], rel=1e-12)


class FeedEvalLoss(TrainerCallback):
    """Feeds each evaluation's loss to an lrlab policy: ``sched.step(eval_loss)``."""

    def __init__(self, sched):
        self.sched = sched

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.sched.step(metrics["eval_loss"])


def test_policy_fed_by_a_callback(tmp_path):
    policy = lrlab.from_config(
        {"type": "policy", "trigger": "epoch", "factor": 0.5, "schedule": CLR.to_config()}
    )
    torch.manual_seed(0)
    model = TinyRegressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = Scheduler(opt, policy)
    trainer = Trainer(
        model=model,
        args=_args(tmp_path, eval_strategy="steps", eval_steps=8),
        train_dataset=TinyDataset(64, 0),
        eval_dataset=TinyDataset(16, 1),
        optimizers=(opt, sched),
        callbacks=[FeedEvalLoss(sched)],
    )
    trainer.train()
    steps, lrs = _logged_lrs(trainer)
    # evaluations after steps 8, 16 (and 24): each pops once, from the next step on
    expected = [CLR(s - 1) * 0.5 ** ((s - 1) // 8) for s in steps]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert sched.states["lr"][0].observations == STEPS // 8


def test_docs_snippet(tmp_path, monkeypatch):
    """The Hugging Face snippet of docs/integrations.md runs as written."""
    text = (Path(__file__).parents[1] / "docs" / "integrations.md").read_text()
    code = re.search(r"<!-- snippet: hf -->\s*```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/integrations.md[hf]", "exec"), {})


# --------------------------------------------------------------------------------------------
# lrlab.lab.callbacks.HuggingFaceReporter: a trial function that trains with the HF Trainer


def _mse(model, data):
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(data.x)["logits"], data.y))


def test_huggingface_reporter_reports_each_evaluation(tmp_path):
    """``eval_strategy="epoch"``: one report per epoch, numbered 1..N, holding the evaluation's
    metrics without the speed counters; the last ``eval_loss`` is the trained model's MSE on
    the evaluation set, computed here; the rates logged are the trial's schedule."""
    from lrlab.lab.callbacks import HuggingFaceReporter

    trial = RecordingTrial(CLR)
    torch.manual_seed(0)
    model = TinyRegressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    evaluation = TinyDataset(16, 1)
    trainer = Trainer(
        model=model,
        args=_args(tmp_path, max_steps=-1, num_train_epochs=3, eval_strategy="epoch"),
        train_dataset=TinyDataset(64, 0),  # 8 steps per epoch
        eval_dataset=evaluation,
        optimizers=(opt, trial.scheduler(opt)),
        callbacks=[HuggingFaceReporter(trial)],
    )
    trainer.train()
    assert [epoch for epoch, _ in trial.reports] == [1, 2, 3]
    assert all(set(m) == {"eval_loss"} for _, m in trial.reports)
    assert all(type(m["eval_loss"]) is float for _, m in trial.reports)
    logged = [row["eval_loss"] for row in trainer.state.log_history if "eval_loss" in row]
    assert [m["eval_loss"] for _, m in trial.reports] == logged
    assert trial.reports[-1][1]["eval_loss"] == pytest.approx(_mse(model, evaluation), rel=1e-5)
    steps, lrs = _logged_lrs(trainer)
    assert lrs == pytest.approx([CLR(k - 1) for k in steps], rel=1e-12)


def test_huggingface_reporter_keeps_compute_metrics_and_counts_step_evaluations(tmp_path):
    """Evaluations every 8 of 24 steps are epochs 1, 2, 3; ``compute_metrics`` values are reported
    under the Trainer's names (``eval_`` prefix kept)."""
    from lrlab.lab.callbacks import HuggingFaceReporter

    def mae(prediction):
        logits, labels = prediction.predictions, prediction.label_ids
        return {"mae": float(abs(logits - labels).mean())}

    trial = RecordingTrial(RALR)
    torch.manual_seed(0)
    model = TinyRegressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    evaluation = TinyDataset(16, 1)
    trainer = Trainer(
        model=model,
        args=_args(tmp_path, eval_strategy="steps", eval_steps=8),
        train_dataset=TinyDataset(64, 0),
        eval_dataset=evaluation,
        compute_metrics=mae,
        optimizers=(opt, trial.scheduler(opt)),
        callbacks=[HuggingFaceReporter(trial)],
    )
    trainer.train()
    assert [epoch for epoch, _ in trial.reports] == [1, 2, 3]
    assert all(set(m) == {"eval_loss", "eval_mae"} for _, m in trial.reports)
    with torch.no_grad():
        expected = float((model(evaluation.x)["logits"] - evaluation.y).abs().mean())
    assert trial.reports[-1][1]["eval_mae"] == pytest.approx(expected, rel=1e-5)


def test_huggingface_reporter_ignores_evaluations_after_training(tmp_path):
    """A final ``trainer.evaluate(test_set)`` is not an epoch of training: not reported."""
    from lrlab.lab.callbacks import HuggingFaceReporter

    trial = RecordingTrial(CLR)
    torch.manual_seed(0)
    model = TinyRegressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(
        model=model,
        args=_args(tmp_path, max_steps=-1, num_train_epochs=2, eval_strategy="epoch"),
        train_dataset=TinyDataset(64, 0),
        eval_dataset=TinyDataset(16, 1),
        optimizers=(opt, trial.scheduler(opt)),
        callbacks=[HuggingFaceReporter(trial)],
    )
    trainer.train()
    test = trainer.evaluate(TinyDataset(16, 2), metric_key_prefix="test")
    assert "test_loss" in test
    assert [epoch for epoch, _ in trial.reports] == [1, 2]
    assert all(set(m) == {"eval_loss"} for _, m in trial.reports)


def test_huggingface_reporter_reports_several_eval_sets_as_one_epoch(tmp_path):
    """``eval_dataset={"a": ..., "b": ...}``: two ``on_evaluate`` calls at the same step, reported
    under the same epoch (the lab's trial merges them into one row)."""
    from lrlab.lab.callbacks import HuggingFaceReporter

    trial = RecordingTrial(CLR)
    torch.manual_seed(0)
    model = TinyRegressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(
        model=model,
        args=_args(tmp_path, max_steps=-1, num_train_epochs=2, eval_strategy="epoch"),
        train_dataset=TinyDataset(64, 0),
        eval_dataset={"a": TinyDataset(16, 1), "b": TinyDataset(16, 2)},
        optimizers=(opt, trial.scheduler(opt)),
        callbacks=[HuggingFaceReporter(trial)],
    )
    trainer.train()
    assert [(epoch, set(m)) for epoch, m in trial.reports] == [
        (1, {"eval_a_loss"}),
        (1, {"eval_b_loss"}),
        (2, {"eval_a_loss"}),
        (2, {"eval_b_loss"}),
    ]


def test_docs_trial_snippet(tmp_path, monkeypatch):
    """The ``hf-trial`` snippet of docs/integrations.md: its ``train(trial)`` reports every epoch."""
    text = (Path(__file__).parents[1] / "docs" / "integrations.md").read_text()
    code = re.search(r"<!-- snippet: hf-trial -->\s*```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "docs/integrations.md[hf-trial]", "exec"), namespace)
    trial = RecordingTrial(CLR, settings={"epochs": 3}, seed=1)
    namespace["train"](trial)
    assert [epoch for epoch, _ in trial.reports] == [1, 2, 3]
    assert all({"eval_loss"} <= set(m) for _, m in trial.reports)
