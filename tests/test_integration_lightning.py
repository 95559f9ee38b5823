"""Lightning: lrlab.torch.Scheduler returned from ``configure_optimizers``.

What Lightning logs (``LearningRateMonitor`` -> the trainer's logger) is compared with lrlab's
own values: per step, per epoch, and for a metric-driven policy fed through ``monitor``.

Lightning decides how to call a scheduler from its config dict: ``reduce_on_plateau`` defaults to
``isinstance(scheduler, ReduceLROnPlateau)``, so for any other scheduler ``monitor`` is silently
ignored and ``step()`` is called without the metric. A policy therefore needs
``"reduce_on_plateau": True`` in its dict, and Lightning then calls *only* ``step(metric)``; when
the policy multiplies a time schedule, the same scheduler is listed a second time without
``monitor`` so that ``step()`` advances time as well (see docs/integrations.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip(
    "lightning.pytorch", reason="lightning is not installed (pip install 'lrlab[integrations]')"
)

from helpers import RecordingTrial  # noqa: E402
from lightning.pytorch.callbacks import LearningRateMonitor  # noqa: E402
from lightning.pytorch.loggers import Logger  # noqa: E402

import lrlab  # noqa: E402
from lrlab.schedules import Cosine, Cyclic, RandomAmplify  # noqa: E402
from lrlab.torch import Scheduler  # noqa: E402

BATCHES = 4  # per epoch
EPOCHS = 4


class MemoryLogger(Logger):
    """A Lightning logger that keeps every ``log_metrics`` call in memory (no files)."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[int, dict]] = []

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, {k: float(v) for k, v in metrics.items()}))

    def series(self, key):
        return [row[key] for _, row in self.rows if key in row]


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = x @ torch.linspace(-1, 1, 6).unsqueeze(1) + 0.3 * torch.randn(n, 1, generator=g)
    return torch.utils.data.TensorDataset(x, y)


class TinyModule(pl.LightningModule):
    def __init__(self, make_lr_config):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU())
        self.head = torch.nn.Linear(8, 1)
        self.make_lr_config = make_lr_config
        self.val_losses: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.head(self.body(x)), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.head(self.body(x)), y))

    def on_validation_epoch_end(self):
        self.val_losses.append(float(self.trainer.callback_metrics["val_loss"]))

    def train_dataloader(self):
        return torch.utils.data.DataLoader(_data(8 * BATCHES, 0), batch_size=8)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(_data(16, 1), batch_size=16)

    def configure_optimizers(self):
        groups = [{"params": self.body.parameters()}, {"params": self.head.parameters()}]
        opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
        return self.make_lr_config(opt)


def _fit(tmp_path, make_lr_config, *, logging_interval=None):
    torch.manual_seed(0)
    module = TinyModule(make_lr_config)
    logger = MemoryLogger()
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=[LearningRateMonitor(logging_interval=logging_interval)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=tmp_path,
    )
    trainer.fit(module)
    assert trainer.global_step == EPOCHS * BATCHES
    return module, trainer, logger


RALR = RandomAmplify(base=Cosine(lr=0.1, total=EPOCHS * BATCHES), p=0.5, period=1, seed=5)
CLR = Cyclic(base_lr=0.01, max_lr=0.05, step_size_up=3)


def test_interval_step(tmp_path):
    """Per-iteration schedules, one per parameter group: Lightning logs lrlab's value at every step."""

    def config(opt):
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": Scheduler(opt, [RALR, CLR]), "interval": "step"},
        }

    _, trainer, logger = _fit(tmp_path, config)
    steps = range(EPOCHS * BATCHES)
    assert logger.series("lr-SGD/pg1") == pytest.approx([RALR(t) for t in steps], rel=1e-12)
    assert logger.series("lr-SGD/pg2") == pytest.approx([CLR(t) for t in steps], rel=1e-12)
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == EPOCHS * BATCHES
    assert not list(Path(tmp_path).rglob("*.ckpt"))


def test_interval_epoch(tmp_path):
    """A per-epoch schedule (horizon in epochs), logged at each epoch start."""
    schedule = lrlab.from_config(
        {
            "type": "ralr",
            "base": {"type": "cosine", "lr": 0.1, "total": EPOCHS},
            "p": 0.7,
            "seed": 3,
        }
    )

    def config(opt):
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": Scheduler(opt, schedule), "interval": "epoch"},
        }

    _, _, logger = _fit(tmp_path, config)
    expected = [schedule(e) for e in range(EPOCHS)]
    assert logger.series("lr-SGD/pg1") == pytest.approx(expected, rel=1e-12)
    assert logger.series("lr-SGD/pg2") == pytest.approx(expected, rel=1e-12)


def _expected_policy_lrs(policy, val_losses, steps_per_epoch):
    """lrlab's own loop: step() every iteration, the epoch's val_loss fed at the epoch end."""
    state, lrs = policy.init(), []
    for epoch in range(EPOCHS):
        lrs += [policy.value(state, epoch * steps_per_epoch + b) for b in range(steps_per_epoch)]
        state = policy.observe(state, val_losses[epoch])
    return lrs, state


def test_metric_driven_policy_with_monitor(tmp_path):
    """A plateau policy on a per-step CLR: time advances every step, val_loss is fed every epoch."""
    policy = lrlab.from_config(
        {
            "type": "policy",
            "trigger": "plateau",
            "factor": 0.5,
            "patience": 0,
            "threshold": 0.5,
            "schedule": CLR.to_config(),
        }
    )

    def config(opt):
        sched = Scheduler(opt, policy)
        return [opt], [
            {"scheduler": sched, "interval": "step", "name": "lrlab"},  # step(): advances time
            {
                "scheduler": sched,
                "interval": "epoch",
                "monitor": "val_loss",  # step(val_loss)
                "reduce_on_plateau": True,
                "name": "lrlab-metric",
            },
        ]

    module, trainer, logger = _fit(tmp_path, config, logging_interval="step")
    assert len(module.val_losses) == EPOCHS
    expected, state = _expected_policy_lrs(policy, module.val_losses, BATCHES)
    assert state.pops >= 2, "the test should make the policy cut the lr"
    logged = logger.series("lrlab/pg1")
    assert logged == pytest.approx(expected, rel=1e-12)
    assert logger.series("lrlab/pg2") == logged
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.states["lr"][0] == state
    assert sched.last_epoch == EPOCHS * BATCHES


def test_policy_without_reduce_on_plateau_never_sees_the_metric(tmp_path):
    """Why the flag is needed: without it Lightning ignores ``monitor`` for a non-ReduceLROnPlateau
    scheduler and calls ``step()``, so the policy never observes anything."""
    policy = lrlab.from_config({"type": "policy", "trigger": "epoch", "factor": 0.5, "lr0": 0.1})

    def config(opt):
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": Scheduler(opt, policy),
                "interval": "epoch",
                "monitor": "val_loss",
            },
        }

    _, trainer, _ = _fit(tmp_path, config)
    assert trainer.lr_scheduler_configs[0].reduce_on_plateau is False
    assert trainer.lr_scheduler_configs[0].scheduler.states["lr"][0].observations == 0

    def config_ok(opt):
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": Scheduler(opt, policy),
                "interval": "epoch",
                "monitor": "val_loss",
                "reduce_on_plateau": True,
            },
        }

    _, trainer, logger = _fit(tmp_path, config_ok)
    assert trainer.lr_scheduler_configs[0].scheduler.states["lr"][0].observations == EPOCHS
    assert logger.series("lr-SGD/pg1") == pytest.approx([0.1 * 0.5**e for e in range(EPOCHS)])


def test_docs_snippet(tmp_path, monkeypatch):
    """The Lightning snippet of docs/integrations.md runs as written."""
    text = (Path(__file__).parents[1] / "docs" / "integrations.md").read_text()
    code = re.search(r"<!-- snippet: lightning -->\s*```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "docs/integrations.md[lightning]", "exec"), namespace)


# --------------------------------------------------------------------------------------------
# lrlab.lab.callbacks.LightningReporter: a trial function that trains with Lightning


class ReportingModule(TinyModule):
    """Logs a training loss reduced per epoch and two validation metrics, and keeps its own copy
    of every value, so the reports can be checked against what the module computed."""

    def __init__(self, trial):
        super().__init__(
            lambda opt: {
                "optimizer": opt,
                "lr_scheduler": {"scheduler": trial.scheduler(opt), "interval": "step"},
            }
        )
        self.batch_losses: list[list[float]] = []
        self.val_abs: list[float] = []

    def on_train_epoch_start(self):
        self.batch_losses.append([])

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.batch_losses[-1].append(float(loss.detach()))
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def on_validation_epoch_end(self):
        super().on_validation_epoch_end()
        x, y = self.val_dataloader().dataset.tensors
        with torch.no_grad():
            value = float((self.head(self.body(x)) - y).abs().mean())
        self.val_abs.append(value)
        self.log("val_mae", value)  # logged at epoch end: reported too


def _fit_reporting(tmp_path, trial, **trainer_options):
    from lrlab.lab.callbacks import LightningReporter

    torch.manual_seed(0)
    module = ReportingModule(trial)
    logger = MemoryLogger()
    options = dict(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=[LearningRateMonitor(logging_interval="step"), LightningReporter(trial)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
        default_root_dir=tmp_path,
    )
    options.update(trainer_options)
    pl.Trainer(**options).fit(module)
    return module, logger


def test_lightning_reporter_reports_every_validated_epoch(tmp_path):
    """One report per epoch (1-based), with this epoch's validation and training values: the
    sanity check is not reported, ``train_loss`` is the mean of the epoch's batch losses, and the
    scheduler from ``trial.scheduler(opt)`` drives the rates Lightning logs."""
    trial = RecordingTrial(CLR)
    module, logger = _fit_reporting(tmp_path, trial, num_sanity_val_steps=2)
    assert [epoch for epoch, _ in trial.reports] == list(range(1, EPOCHS + 1))
    # LearningRateMonitor adds the rates it logs to callback_metrics: they are reported as well
    names = {"train_loss", "val_loss", "val_mae", "lr-SGD/pg1", "lr-SGD/pg2"}
    assert all(set(m) == names for _, m in trial.reports)
    assert all(type(v) is float for _, m in trial.reports for v in m.values())
    # the module recorded EPOCHS validations besides the sanity check's (which came first)
    val_losses = module.val_losses[-EPOCHS:]
    assert [m["val_loss"] for _, m in trial.reports] == pytest.approx(val_losses, rel=1e-6)
    assert [m["val_mae"] for _, m in trial.reports] == pytest.approx(
        module.val_abs[-EPOCHS:], rel=1e-6
    )
    train_means = [sum(b) / len(b) for b in module.batch_losses]
    assert [m["train_loss"] for _, m in trial.reports] == pytest.approx(train_means, rel=1e-6)
    steps = range(EPOCHS * BATCHES)
    assert logger.series("lr-SGD/pg1") == pytest.approx([CLR(t) for t in steps], rel=1e-12)
    last_steps = [e * BATCHES - 1 for e in range(1, EPOCHS + 1)]  # float32 in callback_metrics
    assert [m["lr-SGD/pg1"] for _, m in trial.reports] == pytest.approx(
        [CLR(t) for t in last_steps], rel=1e-6
    )


def test_lightning_reporter_skips_epochs_without_validation(tmp_path):
    trial = RecordingTrial(RALR)
    _fit_reporting(tmp_path, trial, check_val_every_n_epoch=2, num_sanity_val_steps=0)
    assert [epoch for epoch, _ in trial.reports] == [2, 4]
    assert all("val_loss" in m for _, m in trial.reports)


def test_lightning_reporter_without_validation_reports_every_epoch(tmp_path):
    trial = RecordingTrial(RALR)
    _fit_reporting(tmp_path, trial, limit_val_batches=0)
    assert [epoch for epoch, _ in trial.reports] == list(range(1, EPOCHS + 1))
    assert all(set(m) == {"train_loss", "lr-SGD/pg1", "lr-SGD/pg2"} for _, m in trial.reports)


def test_lightning_reporter_stops_the_fit_when_report_raises(tmp_path):
    """A trial's report may end the trial (a diverged metric): the exception leaves ``fit``."""

    class Diverged(Exception):
        pass

    class StopAtTwo(RecordingTrial):
        def report(self, epoch, **metrics):
            super().report(epoch, **metrics)
            if epoch == 2:
                raise Diverged("val_loss is nan")

    trial = StopAtTwo(CLR)
    with pytest.raises(Diverged):
        _fit_reporting(tmp_path, trial, num_sanity_val_steps=0)
    assert [epoch for epoch, _ in trial.reports] == [1, 2]


def test_docs_trial_snippet(tmp_path, monkeypatch):
    """The ``lightning-trial`` snippet of docs/integrations.md: its ``train(trial)`` reports every epoch."""
    text = (Path(__file__).parents[1] / "docs" / "integrations.md").read_text()
    code = re.search(r"<!-- snippet: lightning-trial -->\s*```python\n(.*?)```", text, re.S).group(
        1
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "docs/integrations.md[lightning-trial]", "exec"), namespace)
    trial = RecordingTrial(CLR, settings={"epochs": 3}, seed=1)
    namespace["train"](trial)
    assert [epoch for epoch, _ in trial.reports] == [1, 2, 3]
    assert all({"train_loss", "val_loss"} <= set(m) for _, m in trial.reports)
