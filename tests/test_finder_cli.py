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
    with pytest.raises(SystemExit) as exc:
        main(["find", "--steps", "5"])
    assert exc.value.code == 2
    assert "--steps" in capsys.readouterr().err
