"""A plain PyTorch training loop under lrlab: regression on scikit-learn's diabetes data.

``train(trial)`` is the whole contract: build the model and the optimizer, take the scheduler
from ``trial.scheduler(opt)``, step it after every optimizer step, ``trial.report`` each epoch's
metrics, return the final ones. lrlab calls it once per (schedule, seed).
"""

import torch
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from torch import nn


def load_data(split_seed: int = 0) -> dict[str, torch.Tensor]:
    """Train / validation / test tensors (282 / 71 / 89 patients), inputs and target standardised
    with the training set's statistics."""
    x, y = load_diabetes(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, random_state=split_seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.2, random_state=split_seed
    )
    x_mean, x_std = x_train.mean(0), x_train.std(0)
    y_mean, y_std = y_train.mean(), y_train.std()
    data = {}
    for split, (xs, ys) in {
        "train": (x_train, y_train),
        "val": (x_val, y_val),
        "test": (x_test, y_test),
    }.items():
        data[f"x_{split}"] = torch.tensor((xs - x_mean) / x_std, dtype=torch.float32)
        data[f"y_{split}"] = torch.tensor((ys - y_mean) / y_std, dtype=torch.float32)[:, None]
    return data


def mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(x), y))


def train(trial) -> dict[str, float]:
    settings = trial.settings
    epochs, batch_size = settings["epochs"], settings["batch_size"]
    data = load_data()
    n = len(data["y_train"])
    if -(-n // batch_size) != settings["steps_per_epoch"]:  # the schedules' horizons use it
        raise ValueError(
            f"settings.steps_per_epoch must be {-(-n // batch_size)} at batch {batch_size}"
        )

    torch.manual_seed(trial.seed)
    model = nn.Sequential(
        nn.Linear(10, settings["hidden"]), nn.Tanh(), nn.Linear(settings["hidden"], 1)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)  # the scheduler sets the rate
    sched = trial.scheduler(opt)
    order = torch.Generator().manual_seed(trial.seed)
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for idx in torch.randperm(n, generator=order).split(batch_size):
            loss = nn.functional.mse_loss(model(data["x_train"][idx]), data["y_train"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()  # once per optimizer step: the schedules count steps
            total += loss.item() * len(idx)
        trial.report(
            epoch,
            train_loss=total / n,
            val_loss=mse(model, data["x_val"], data["y_val"]),
            lr=sched.get_last_lr()[0],
        )
    return {"test_loss": mse(model, data["x_test"], data["y_test"])}
