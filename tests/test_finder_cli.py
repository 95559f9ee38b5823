"""``lrlab find`` on a built-in task (the small ``digits`` task: bundled with scikit-learn)."""

from __future__ import annotations

import json

import pytest

import lrlab
from lrlab.cli import main
from lrlab.finder import RangeTestResult


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LRLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_find_writes_json_plot_and_a_cyclic_config(cache, capsys):
    out = cache / "out"
    cfg_path = cache / "cyclic.json"
    rc = main(
        [
            "find",
            "--task",
            "digits",
            "--model",
            "mlp",
            "--steps",
            "40",
            "--repeats",
            "2",
            "--start-lr",
            "1e-3",
            "--end-lr",
            "10",
            "--batch-size",
            "64",
            "--val-every",
            "2",
            "--out",
            str(out),
            "--config-out",
            str(cfg_path),
            "--no-progress",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "base_lr" in captured.out and "max_lr" in captured.out
    data = json.loads((out / "range_test.json").read_text())
    assert data["format"] == "lrlab.range_test" and len(data["repeats"]) == 1
    assert data["config"]["lab"]["task"] == "digits"
    assert (out / "range_test.png").read_bytes()[:4] == b"\x89PNG"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["type"] == "cyclic" and cfg["mode"] == "triangular2"
    assert cfg["base_lr"] == pytest.approx(data["suggestion"]["base_lr"])
    assert cfg["max_lr"] == pytest.approx(data["suggestion"]["max_lr"])
    # digits: 1293 training rows, batch 64 -> 21 iterations per epoch, 4 epochs per half cycle
    assert cfg["step_size_up"] == 4 * 21
    sched = lrlab.from_config(cfg)  # the printed config is accepted as is
    assert sched(0) == pytest.approx(cfg["base_lr"])
    assert json.dumps(cfg) in captured.out  # printed on one line, ready to paste
    # the JSON reads back into a result whose suggestion matches what was printed
    back = RangeTestResult.from_json(out / "range_test.json")
    assert back.suggest().max_lr == pytest.approx(cfg["max_lr"])


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--task", "no-such-task"], "no-such-task"),
        (["--model", "cnn"], "cnn"),
        (["--start-lr", "1", "--end-lr", "0.1"], "start-lr"),
        (["--optimizer", "{not json"], "--optimizer"),
        (["--optimizer", '{"type": "lbfgs"}'], "lbfgs"),
    ],
)
def test_find_bad_arguments_exit_2_with_one_line(cache, capsys, argv, needle):
    rc = main(
        [
            "find",
            "--task",
            "digits",
            "--steps",
            "20",
            "--out",
            str(cache / "o"),
            "--no-progress",
            *argv,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and "error:" in err and needle in err
    assert not (cache / "o").exists()  # failed before training or writing anything


def test_find_argparse_rejects_bad_numbers(cache, capsys):
    assert main(["find", "--steps", "5"]) == 2  # argparse's one line, returned as the status
    assert "--steps" in capsys.readouterr().err


USER_CODE = """
import numpy as np
import torch
from lrlab.lab import make_task

def load():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    return make_task("toy", x[:240], y[:240], x[240:], y[240:], 2)

class Net(torch.nn.Module):
    def __init__(self, task):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(task.input_shape[0], 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
        )

    def forward(self, x):
        return self.body(x)
"""


def test_find_on_the_users_own_task_and_model(cache, capsys, monkeypatch):
    (cache / "mycode.py").write_text(USER_CODE)
    monkeypatch.chdir(cache)  # user modules are imported from the current folder
    rc = main(
        ["find", "--task", "mycode:load", "--model", "mycode:Net", "--steps", "30"]
        + ["--repeats", "1", "--batch-size", "32", "--out", str(cache / "o"), "--no-progress"]
    )
    captured = capsys.readouterr()
    assert rc in (0, 2), captured.err  # 2: the curve had no usable bounds (said in one line)
    data = json.loads((cache / "o" / "range_test.json").read_text())
    assert data["config"]["lab"]["task"] == "mycode:load"
    assert data["config"]["lab"]["model"] == "mycode:Net" and len(data["points"]) >= 10
    assert (cache / "o" / "range_test.png").is_file()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--task", "mycode:nope"], "task: 'mycode' has no attribute 'nope'"),
        (["--task", "nomodule:load"], "task: cannot import 'nomodule'"),
        (
            ["--task", "mycode:load", "--model", "mycode:load"],
            "model: mycode:load() must take the task",
        ),
    ],
)
def test_find_bad_user_code_is_one_line(cache, capsys, monkeypatch, argv, needle):
    (cache / "mycode.py").write_text(USER_CODE)
    monkeypatch.chdir(cache)
    rc = main(["find", "--steps", "20", "--out", str(cache / "o"), "--no-progress", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and needle in err
