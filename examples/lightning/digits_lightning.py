"""A Lightning trial under lrlab: a small classifier of scikit-learn's 8x8 digits.

The LightningModule takes its scheduler from ``trial.scheduler(opt)`` in
``configure_optimizers``, and :class:`lrlab.lab.callbacks.LightningReporter` passes every
validated epoch's logged metrics (``val_loss``, ``val_acc``, ``train_loss``) to ``trial.report``.
"""

import logging
import warnings

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrlab.lab.callbacks import LightningReporter

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no banners in lrlab's output
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")  # lightning 2.6 on torch 2.13, once per fit


def load_data(split_seed: int = 0) -> dict[str, TensorDataset]:
    """Train / validation / test sets (1,149 / 288 / 360 images of 64 pixels, 10 classes)."""
    x, y = load_digits(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=split_seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.2, random_state=split_seed, stratify=y_rest
    )
    mean, std = x_train.mean(), x_train.std()  # one scale for all pixels

    def tensors(xs, ys):
        xs = torch.tensor((xs - mean) / std, dtype=torch.float32)
        return TensorDataset(xs, torch.tensor(ys, dtype=torch.int64))

    return {
        "train": tensors(x_train, y_train),
        "val": tensors(x_val, y_val),
        "test": tensors(x_test, y_test),
    }


class DigitsClassifier(pl.LightningModule):
    def __init__(self, trial, hidden: int):
        super().__init__()
        self.trial = trial
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def _step(self, batch, split: str):
        x, y = batch
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log(f"{split}_loss", loss, on_step=False, on_epoch=True)
        self.log(
            f"{split}_acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True
        )
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.0, momentum=0.9)  # the scheduler sets it
        sched = self.trial.scheduler(opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def train(trial) -> dict[str, float]:
    settings = trial.settings
    data = load_data()
    batch_size = settings["batch_size"]
    steps = -(-len(data["train"]) // batch_size)
    if steps != settings["steps_per_epoch"]:  # the schedules' horizons use it
        raise ValueError(f"settings.steps_per_epoch must be {steps} at batch {batch_size}")
    torch.manual_seed(trial.seed)
    model = DigitsClassifier(trial, hidden=settings["hidden"])
    trainer = pl.Trainer(
        max_epochs=settings["epochs"],
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
        callbacks=[LightningReporter(trial)],
    )
    shuffle = torch.Generator().manual_seed(trial.seed)
    trainer.fit(
        model,
        DataLoader(data["train"], batch_size=batch_size, shuffle=True, generator=shuffle),
        DataLoader(data["val"], batch_size=256),
    )
    (test,) = trainer.test(model, DataLoader(data["test"], batch_size=256), verbose=False)
    return {"test_acc": float(test["test_acc"]), "test_loss": float(test["test_loss"])}
