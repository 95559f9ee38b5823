"""The trainer: determinism, learning rates actually used, divergence, best-checkpoint bookkeeping,
the spec's validation and key."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from helpers import BATCH, numbers, spec_for

import lrlab.schedules
from lrlab.errors import ConfigError
from lrlab.lab import tasks as T
from lrlab.lab.models import build_model
from lrlab.lab.trainer import (
    EpochRecord,
    TrialResult,
    TrialSpec,
    evaluate,
    iterations_per_epoch,
    normalize_optimizer,
    train_trial,
)

# --------------------------------------------------------------------------------------------
# determinism


@pytest.mark.parametrize("model,interval", [("cnn", "step"), ("mlp", "epoch")])
def test_same_spec_gives_identical_numbers(task, model, interval):
    spec = spec_for(
        {"type": "cosine", "lr": 0.1, "total": 3 * 15}, model=model, lr_interval=interval
    )
    a, b = train_trial(spec, task=task), train_trial(spec, task=task)
    assert numbers(a) == numbers(b)
    assert len(a.epochs) == 3 and not a.diverged


def test_loading_the_task_inside_gives_the_same_numbers_as_passing_it(task, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "load_task", lambda *a, **k: task)  # what train_trial loads by name
    spec = spec_for(epochs=1)
    assert numbers(train_trial(spec)) == numbers(train_trial(spec, task=task))


def test_different_seed_gives_different_numbers(task):
    a = train_trial(spec_for(epochs=1, seed=0), task=task)
    b = train_trial(spec_for(epochs=1, seed=1), task=task)
    assert a.epochs[0].train_loss != b.epochs[0].train_loss


def test_trial_leaves_global_rng_and_threads_alone(task):
    torch.manual_seed(1234)
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    train_trial(spec_for(epochs=1), task=task, threads=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads


# --------------------------------------------------------------------------------------------
# learning rates


def test_recorded_lr_per_step_equals_the_schedule(task):
    config = {"type": "cosine", "lr": 0.2, "total": 40, "end_lr": 0.001}
    spec = spec_for(config, epochs=3)
    result = train_trial(spec, task=task)
    s = iterations_per_epoch(len(task.y_train), BATCH)
    assert s == math.ceil(720 / BATCH)
    values = lrlab.schedules.from_config(config).values(3 * s)
    for record in result.epochs:
        used = values[(record.epoch - 1) * s : record.epoch * s]
        assert record.lr == pytest.approx(used.mean(), rel=1e-12)
        assert record.lr_min == pytest.approx(used.min(), rel=1e-12)
        assert record.lr_max == pytest.approx(used.max(), rel=1e-12)


def test_recorded_lr_per_epoch_equals_the_schedule(task):
    config = {"type": "step", "lr": 0.1, "step_size": 1, "gamma": 0.5}
    result = train_trial(spec_for(config, epochs=3, lr_interval="epoch"), task=task)
    for record in result.epochs:
        expected = 0.1 * 0.5 ** (record.epoch - 1)  # epoch e uses schedule(e - 1)
        assert record.lr == record.lr_min == record.lr_max == pytest.approx(expected, rel=1e-12)


class RecordingPolicy:
    """A metric-driven policy (the lrlab.policies protocol): halves the LR on every observation
    and records what it was fed."""

    stateful = True

    def __init__(self, lr):
        self.base, self.seen = lr, []

    def init(self):
        return 0

    def observe(self, state, metric):
        self.seen.append(metric)
        return state + 1

    def value(self, state, step):
        return self.base * 0.5**state

    def state_to_dict(self, state):
        return {"n": state}

    def state_from_dict(self, d, where="state"):
        return d["n"]


def test_policy_is_fed_each_epochs_validation_loss(task, monkeypatch):
    policy = RecordingPolicy(0.08)
    monkeypatch.setattr(lrlab.schedules, "from_config", lambda config: policy)
    result = train_trial(spec_for({"type": "recording"}, epochs=3), task=task)
    # one observation per epoch, after its evaluation (also after the last epoch: harmless,
    # and it is what a decision "after the last epoch" needs)
    assert policy.seen == [e.val_loss for e in result.epochs]
    assert [e.lr for e in result.epochs] == pytest.approx([0.08, 0.04, 0.02], rel=1e-12)


def test_real_policy_pops_once_per_epoch(task):
    """lrlab's "update by epoch" policy: epoch e uses the sequence value after e - 1 pops, and a
    per-step Scheduler.step() does not pop (only step(val_loss) does)."""
    seq = {"type": "sequence", "kind": "seq3", "lr": 0.01}
    policy = {"type": "policy", "trigger": "epoch", "values": seq}
    result = train_trial(spec_for(policy, epochs=3), task=task)
    expected = lrlab.schedules.from_config(seq).values(3)
    for record in result.epochs:
        assert (
            record.lr_min == record.lr_max == pytest.approx(expected[record.epoch - 1], rel=1e-12)
        )


# --------------------------------------------------------------------------------------------
# divergence and the best checkpoint


def test_absurd_lr_marks_the_trial_diverged_and_stops_it(task):
    seen = []
    spec = spec_for({"type": "constant", "lr": 1e6}, epochs=5, model="mlp")
    result = train_trial(spec, task=task, on_epoch=seen.append)
    assert result.diverged
    assert len(result.epochs) < spec.epochs
    assert not math.isfinite(result.epochs[-1].train_loss)
    assert seen == result.epochs  # the diverged epoch is still reported
    assert result.best_epoch == 0 or math.isfinite(result.best_val_loss)


def test_best_checkpoint_bookkeeping(task):
    # a high constant LR makes the validation loss go up and down, so best != last is likely;
    # the bookkeeping must hold either way
    spec = spec_for({"type": "constant", "lr": 0.3}, epochs=6, model="mlp", seed=3)
    result = train_trial(spec, task=task, keep_best_state=True)
    val = [e.val_loss for e in result.epochs]
    best = int(np.argmin(val))
    assert result.best_epoch == result.epochs[best].epoch == best + 1
    assert result.best_val_loss == val[best]
    assert result.best_test_acc == result.epochs[best].test_acc
    assert result.final_test_acc == result.epochs[-1].test_acc

    # the kept weights are those of the best epoch: evaluating them reproduces its losses
    model = build_model("mlp", task)
    model.load_state_dict(result.best_state)
    assert all(v.device.type == "cpu" for v in result.best_state.values())
    assert evaluate(model, task.x_val, task.y_val)[0] == result.best_val_loss
    assert evaluate(model, task.x_test, task.y_test)[1] == result.best_test_acc


def test_best_state_only_returned_when_asked(task):
    result = train_trial(spec_for(epochs=1), task=task)
    assert result.best_state is None and result.best_epoch == 1


def test_on_epoch_sees_every_record_in_order(task):
    seen: list[EpochRecord] = []
    result = train_trial(spec_for(epochs=3), task=task, on_epoch=seen.append)
    assert seen == result.epochs and [e.epoch for e in seen] == [1, 2, 3]
    assert all(0.0 <= e.val_acc <= 1.0 and e.seconds >= 0 for e in seen)
    assert result.wall_time >= sum(e.seconds for e in seen)


@pytest.mark.parametrize(
    "optimizer",
    [
        {"type": "adam"},
        {"type": "adamw", "weight_decay": 0.05},
        {"type": "sgd", "momentum": 0.9, "nesterov": True},
    ],
)
def test_other_optimizers_train(task, optimizer):
    lr = 0.01 if optimizer["type"] == "sgd" else 0.003
    result = train_trial(
        spec_for({"type": "constant", "lr": lr}, epochs=2, optimizer=optimizer), task=task
    )
    assert not result.diverged
    assert result.epochs[1].train_loss < result.epochs[0].train_loss  # it learns
    assert result.spec.optimizer["type"] == optimizer["type"]


def test_task_name_must_match_the_spec(task):
    other = dataclasses.replace(task, name="digits")
    with pytest.raises(ConfigError, match="digits"):
        train_trial(spec_for(epochs=1), task=other)


# --------------------------------------------------------------------------------------------
# the spec


def test_spec_dict_round_trip_and_defaults():
    spec = spec_for()
    d = spec.to_dict()
    assert d["optimizer"]["type"] == "sgd" and d["optimizer"]["momentum"] == 0.9
    assert d["optimizer"]["weight_decay"] == 5e-4 and d["lr_interval"] == "step"
    again = TrialSpec.from_dict(d)
    assert again == spec and again.key() == spec.key()


def test_result_dict_round_trip(task):
    result = train_trial(spec_for(epochs=1), task=task)
    again = TrialResult.from_dict(result.to_dict())
    assert numbers(again) == numbers(result) and again.spec == result.spec


def test_key_is_stable_and_canonical():
    a = spec_for(optimizer={"type": "sgd", "momentum": 0.9, "weight_decay": 5e-4})
    b = spec_for(
        optimizer={
            "weight_decay": 0.0005,
            "type": "sgd",
            "momentum": 0.9,
            "nesterov": False,
            "dampening": 0,
        }
    )
    assert a.key() == b.key() and len(a.key()) == 16
    assert int(a.key(), 16) >= 0
    assert spec_for(seed=1).key() != a.key()
    assert spec_for(schedule={"type": "constant", "lr": 0.06}).key() != a.key()
    assert spec_for(data_dir="/somewhere").key() == a.key()  # where the data is, not what


def test_schedule_object_is_stored_as_its_config():
    sched = lrlab.schedules.from_config({"type": "cosine", "lr": 0.1, "total": 10})
    spec = spec_for(sched)
    assert spec.schedule == sched.to_config()


@pytest.mark.parametrize(
    "change,match",
    [
        ({"task": "mnist2d"}, "mnist1d"),
        ({"model": "cnn28"}, "input shape"),
        ({"model": "resnet"}, "resnet20"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"seed": -1}, "seed"),
        ({"lr_interval": "batch"}, "step, epoch|epoch, step"),
        ({"optimizer": {"type": "rmsprop"}}, "adam"),
        ({"optimizer": {"type": "sgd", "lr": 0.1}}, "schedule"),
        ({"optimizer": {"type": "sgd", "momentun": 0.9}}, "did you mean 'momentum'"),
        ({"optimizer": {"type": "adam", "betas": [0.9]}}, "betas"),
        ({"optimizer": {"type": "sgd", "nesterov": True}}, "nesterov"),
        ({"schedule": {"lr": 0.1}}, "type"),
    ],
)
def test_spec_validation_errors(change, match):
    kw = dict(
        task="mnist1d",
        model="cnn",
        schedule={"type": "constant", "lr": 0.1},
        epochs=1,
        batch_size=10,
        seed=0,
    )
    kw.update(change)
    with pytest.raises(ConfigError, match=match):
        TrialSpec(**kw)


def test_from_dict_rejects_unknown_and_missing_keys():
    d = spec_for().to_dict()
    with pytest.raises(ConfigError, match="epoch"):
        TrialSpec.from_dict({**d, "epoch": 3})
    del d["seed"]
    with pytest.raises(ConfigError, match="seed"):
        TrialSpec.from_dict(d)


def test_normalize_optimizer_fills_torch_defaults():
    adam = normalize_optimizer({"type": "adam"})
    assert adam == {
        "type": "adam",
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 0.0,
        "amsgrad": False,
    }
    assert normalize_optimizer({"type": "adamw"})["weight_decay"] == 0.01


def test_unknown_schedule_type_is_a_config_error(task):
    spec = spec_for({"type": "cosinus", "lr": 0.1})
    with pytest.raises(ConfigError, match="cosine"):
        train_trial(spec, task=task)


def test_keys_of_lrlab_trainer_specs_are_pinned():
    """The key of a built-in spec is pinned: the user-trial fields do not enter it unless set.
    (Trainer version 1 gave "2e59e417b489296f" at commit a452f44; version 2, batched training,
    changes the last bits of the numbers, so its trials are keyed anew and trained again.)"""
    assert spec_for().key() == "0557eae618c7774b"
    user = spec_for(trial="mymod:train", settings={"epochs": 3})
    assert user.key() != spec_for().key()  # the new fields enter the key when they are set
    named = spec_for(schedule_name="x", code_dir="/somewhere", objective="val_loss")
    assert named.key() == spec_for().key()
