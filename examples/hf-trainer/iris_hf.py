"""A Hugging Face Trainer trial under lrlab: a small classifier of scikit-learn's iris data.

The Trainer gets ``optimizers=(opt, trial.scheduler(opt))``, evaluates every epoch, and
:class:`lrlab.lab.callbacks.HuggingFaceReporter` passes each evaluation's metrics
(``eval_loss``, ``eval_accuracy``) to ``trial.report``. Nothing is downloaded: the model is a
plain ``nn.Module`` whose ``forward`` returns ``{"loss", "logits"}``, as the Trainer expects.
"""

import os
import tempfile

for _flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_flag, "1")

import torch  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from torch import nn  # noqa: E402
from transformers import PrinterCallback, Trainer, TrainingArguments  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from lrlab.lab.callbacks import HuggingFaceReporter  # noqa: E402

hf_logging.set_verbosity_error()


class IrisData(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x = torch.tensor(x, dtype=torch.float32)
        self.y = torch.tensor(y, dtype=torch.int64)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def load_data(split_seed: int = 0) -> dict[str, IrisData]:
    """Train / validation / test sets (96 / 24 / 30 flowers, 4 standardised features, 3 classes)."""
    x, y = load_iris(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=split_seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.2, random_state=split_seed, stratify=y_rest
    )
    mean, std = x_train.mean(0), x_train.std(0)
    return {
        "train": IrisData((x_train - mean) / std, y_train),
        "val": IrisData((x_val - mean) / std, y_val),
        "test": IrisData((x_test - mean) / std, y_test),
    }


class IrisNet(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, x, labels=None):
        logits = self.net(x)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def train(trial) -> dict[str, float]:
    settings = trial.settings
    data = load_data()
    batch_size = settings["batch_size"]
    steps = -(-len(data["train"]) // batch_size)
    if steps != settings["steps_per_epoch"]:  # the schedules' horizons use it
        raise ValueError(f"settings.steps_per_epoch must be {steps} at batch {batch_size}")
    torch.manual_seed(trial.seed)
    model = IrisNet(settings["hidden"])
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)  # the scheduler sets it
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            num_train_epochs=settings["epochs"],
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=256,
            eval_strategy="epoch",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            seed=trial.seed,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data["train"],
            eval_dataset=data["val"],
            compute_metrics=accuracy,
            optimizers=(opt, trial.scheduler(opt)),
            callbacks=[HuggingFaceReporter(trial)],
        )
        trainer.remove_callback(PrinterCallback)  # lrlab shows the progress (disable_tqdm)
        trainer.train()
        test = trainer.evaluate(data["test"], metric_key_prefix="test")
    return {"test_loss": test["test_loss"], "test_accuracy": test["test_accuracy"]}
