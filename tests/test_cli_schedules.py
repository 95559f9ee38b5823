"""The lrlab command: lr, plot, schedules, papers; bad input is one line and a non-zero exit."""

import json
import math
import os
import stat
import subprocess
import sys

import pytest

from lrlab.cli import main
from lrlab.errors import ConfigError

CLR = '{"type": "cyclic", "base_lr": 1, "max_lr": 5, "step_size_up": 4}'


def test_lr_prints_json(capsys):
    assert main(["lr", CLR, "--steps", "11", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [1, 2, 3, 4, 5, 4, 3, 2, 1, 2, 3]


def test_lr_prints_a_table_from_a_toml_file(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('type = "sequence"\nkind = "seq4"\nlr = 0.01\n')
    assert main(["lr", str(path), "--steps", "12"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [int(r[0]) for r in rows] == list(range(12))
    assert float(rows[10][1]) == pytest.approx(0.001) and float(rows[11][1]) == pytest.approx(0.005)


def test_plot_writes_a_png_with_several_configs(tmp_path):
    out = tmp_path / "p.png"
    assert (
        main(
            [
                "plot",
                CLR,
                '{"type": "cosine", "lr": 3, "total": 50}',
                "--steps",
                "50",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schedules_lists_every_type_with_defaults(capsys):
    assert main(["schedules", "--json"]) == 0
    rows = {row["type"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"cyclic", "ralr", "kdecay", "sequence", "cosine", "warmup", "join"} <= set(rows)
    cyclic = {p["name"]: p["default"] for p in rows["cyclic"]["params"]}
    assert cyclic["step_size_up"] == 2000 and cyclic["base_lr"] == "<required>"


def test_papers_prints_and_plots(tmp_path, capsys):
    out = tmp_path / "papers.png"
    assert main(["papers", "-o", str(out)]) == 0
    assert out.exists() and "RALR" in capsys.readouterr().out


@pytest.mark.integration  # runs lrlab in a subprocess
@pytest.mark.parametrize(
    "args,fragment",
    [
        (["lr", '{"type": "cosine", "lr": -1, "total": 5}', "--steps", "3"], "cosine.lr must be"),
        (["lr", '{"type": "cosin", "lr": 1}', "--steps", "3"], "did you mean 'cosine'"),
        (["lr", "missing-file.json", "--steps", "3"], "neither inline JSON nor an existing"),
        (["lr", CLR, "--steps", "0"], "--steps: must be an integer >= 1"),
        (["lr", CLR, "--steps", "-5"], "--steps: must be an integer >= 1"),
        (["lr", CLR, "--steps", "abc"], "--steps: must be an integer"),
        (["lr", CLR, "--steps", "100000000000"], "<= 100,000,000"),
        (["lr", CLR, "--steps", "9" * 5000], "(5000 characters)"),
        (["lr", CLR], "required: --steps"),
        (["lr", CLR, "--steps", "3", "--steps-per-epoch", "0"], "--steps-per-epoch"),
        (["plot", CLR, "--steps", "3", "-o", "x.jpg"], "allowed suffixes: .png, .pdf, .svg"),
        (["nonsense"], "invalid choice"),
        (["lr", "{not json", "--steps", "3"], "not valid JSON"),
    ],
)
def test_bad_input_is_one_line_without_traceback(args, fragment):
    proc = subprocess.run([sys.executable, "-m", "lrlab", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.integration  # runs lrlab in a subprocess
def test_an_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lrlab",
            "plot",
            CLR,
            "--steps",
            "5",
            "-o",
            str(blocker / "sub" / "x.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert f"{blocker} is a file, not a folder" in proc.stderr


def run_lrlab(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "lrlab", *args], capture_output=True, text=True, cwd=cwd
    )


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    for leak in ("Traceback", "Error:", "Error(", ".tmp", "usage:"):
        assert leak not in lines[0], lines[0]


@pytest.mark.integration  # runs lrlab in a subprocess
def test_an_output_that_is_a_folder_is_one_line_naming_it(tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    proc = run_lrlab("plot", CLR, "--steps", "5", "-o", str(folder))
    assert_one_line_error(proc, f"cannot write {folder}: it is a folder")
    assert list(folder.iterdir()) == []  # no temporary file left behind


@pytest.mark.integration  # runs lrlab in a subprocess
def test_a_closed_pipe_ends_lr_quietly():
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrlab", "lr", CLR, "--steps", "1000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "0\t1.0\n"
    proc.stdout.close()  # what `| head -1` does
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == ""


def test_lr_streams_many_steps_in_chunks(capsys):
    assert main(["lr", '{"type": "step", "lr": 1, "step_size": 70000}', "--steps", "140001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 140001
    assert lines[69999] == "69999\t1.0" and lines[70000] == "70000\t0.1"
    step, value = lines[-1].split("\t")
    assert step == "140000" and float(value) == pytest.approx(0.01, rel=1e-15)


def _strict_json(text):
    def reject(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


@pytest.mark.integration  # runs lrlab in a subprocess
def test_lr_json_never_prints_infinity_or_nan():
    # 2**t overflows float64 after step 1023: rejected, saturated or an error, never Infinity
    proc = run_lrlab(
        "lr", '{"type": "exponential", "lr": 1, "gamma": 2}', "--steps", "1100", "--json"
    )
    if proc.returncode == 0:
        values = _strict_json(proc.stdout)
        assert len(values) == 1100 and all(math.isfinite(v) and v >= 0 for v in values)
    else:
        assert_one_line_error(proc)


def test_files_follow_the_umask(tmp_path):
    from lrlab.atomic import atomic_write_text

    old = os.umask(0o027)
    try:
        assert main(["plot", CLR, "--steps", "5", "-o", str(tmp_path / "p.png")]) == 0
        atomic_write_text(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.png").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == 0o640


@pytest.mark.parametrize(
    "suffix,magic", [(".pdf", b"%PDF-"), (".svg", b"<?xml"), (".png", b"\x89PNG")]
)
def test_plot_format_follows_the_suffix(tmp_path, suffix, magic):
    out = tmp_path / f"lr{suffix}"
    assert main(["plot", CLR, "--steps", "20", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(magic)


def test_plot_labels_lines_by_file_name_and_draws_steps(tmp_path, monkeypatch):
    import matplotlib
    from matplotlib.figure import Figure

    (tmp_path / "fast.json").write_text(CLR)
    (tmp_path / "slow.json").write_text(CLR.replace('"step_size_up": 4', '"step_size_up": 8'))
    drawn = []
    original = Figure.savefig

    def spy(fig, *args, **kwargs):
        drawn.extend(fig.axes[0].get_lines())
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    out = tmp_path / "lr.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        args = [str(tmp_path / "fast.json"), str(tmp_path / "slow.json"), "--steps", "30"]
        assert main(["plot", *args, "-o", str(out), "--log"]) == 0
    assert [line.get_label() for line in drawn] == ["fast", "slow"]
    assert {line.get_drawstyle() for line in drawn} == {"steps-post"}
    assert "fast" in out.read_text() and "slow" in out.read_text()


def test_repeated_labels_fall_back_to_the_source():
    from lrlab.cli.schedule_cmds import unique_labels

    assert unique_labels(["cyclic", "cyclic", "cosine"], ["{a}", "{b}", "c.json"]) == [
        "{a}",
        "{b}",
        "cosine",
    ]
    assert unique_labels(["x", "x"], ["s", "s"]) == ["s", "s #2"]


STUDY = """
task = "digits"
model = "mlp"
epochs = 3
batch_size = 100
seeds = [7, 8]

[schedules.cos]
type = "cosine"
lr = 0.1
total = "${total_steps}"

[schedules.by_epoch]
type = "multistep"
lr = 0.5
milestones = ["${epochs - 1}"]
lr_interval = "epoch"

[schedules.ralr]
type = "ralr"
seed = "${seed}"
period = "${steps_per_epoch}"
base = { type = "constant", lr = 0.1 }

[schedules.cut]
type = "policy"
trigger = "cutoff"
values = { type = "sequence", kind = "seq1", lr = 0.02 }
"""

DIGITS_ITERATIONS = 13  # ceil(1293 training digits / 100)


def test_lr_takes_a_schedule_from_a_study_with_placeholders_resolved(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(STUDY)
    total = 3 * DIGITS_ITERATIONS
    assert main(["lr", f"{path}:cos", "--steps", str(total + 1), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    # the closed form, independently: 0.1 * (1 + cos(pi * t / total)) / 2, held after total
    want = [0.05 * (1 + math.cos(math.pi * min(t, total) / total)) for t in range(total + 1)]
    assert got == pytest.approx(want, abs=1e-15)
    assert main(["lr", f"{path}:by_epoch", "--steps", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx([0.5, 0.5, 0.05, 0.05])


def test_a_study_policy_replays_with_the_study_steps_per_epoch(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(STUDY)
    metrics = json.dumps([1.0, 0.5, 0.499])  # |0.499 - 0.5| < c0 = 0.01: one pop after epoch 3
    steps = 3 * DIGITS_ITERATIONS + 1
    assert main(["lr", f"{path}:cut", "--steps", str(steps), "--metrics", metrics, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got[: 3 * DIGITS_ITERATIONS] == [0.02] * (3 * DIGITS_ITERATIONS)
    assert got[-1] == 0.01


@pytest.mark.integration  # runs lrlab in a subprocess
def test_unknown_study_schedule_is_one_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(STUDY)
    assert_one_line_error(run_lrlab("lr", f"{path}:coss", "--steps", "3"), "did you mean 'cos'")
    assert_one_line_error(run_lrlab("lr", str(path), "--steps", "3"), f"{path}:NAME")


def test_preview_study_plots_every_schedule_resolved_training_nothing(tmp_path, monkeypatch):
    from lrlab.cli import preview
    from lrlab.lab.study import load_study

    def no_training(*args, **kwargs):
        raise AssertionError("preview trained something")

    monkeypatch.setattr("lrlab.lab.trainer.train_trial", no_training)
    path = tmp_path / "s.toml"
    path.write_text(STUDY)
    study = load_study(path)
    curves, xs = preview.study_curves(study)
    assert list(curves) == ["cos", "by_epoch", "ralr", "cut (policy, until its first advance)"]
    assert len(curves["cos"]) == 3 * DIGITS_ITERATIONS and xs["cos"][-1] == pytest.approx(
        3 - 1 / DIGITS_ITERATIONS
    )
    assert list(curves["by_epoch"]) == [0.5, 0.5, 0.05] and list(xs["by_epoch"]) == [0, 1, 2]
    ralr = curves["ralr"].reshape(3, DIGITS_ITERATIONS)  # one draw per epoch, seed 7
    assert (ralr == ralr[:, :1]).all()
    assert (curves["cut (policy, until its first advance)"] == 0.02).all()
    for out in (tmp_path / "lr.png", tmp_path / "lr.pdf"):
        assert preview.preview_study(path, out) == out
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "lr.pdf").read_bytes()[:5] == b"%PDF-"


@pytest.mark.integration  # runs lrlab in a subprocess
def test_schedules_prints_plain_text():
    from lrlab.schedules import REGISTRY

    proc = run_lrlab("schedules")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for name in REGISTRY:
        assert f"\n{name}: " in text
    assert "``" not in text and "METHODS.md" not in text and "../" not in text
    assert not any(line.rstrip().endswith("::") for line in text.splitlines())
    assert all(len(line) <= 79 for line in text.splitlines())
    # every prose paragraph ends a sentence: nothing is cut off after its first line
    for paragraph in text.split("\n\n"):
        lines = [line for line in paragraph.splitlines() if line.startswith("    ")]
        prose = [line for line in lines if not line.startswith("        ")]
        if prose and not lines[0].strip().endswith(":"):
            assert prose[-1].rstrip()[-1] in ".:)", paragraph


@pytest.mark.integration  # runs lrlab in a subprocess
def test_papers_table_fits_80_columns_with_whole_numbers(tmp_path):
    proc = run_lrlab("papers", "-o", str(tmp_path / "p.png"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines) and "…" not in proc.stdout
    rows = [line for line in lines if line[:4] in ("RALR", "CLR ", "seq4", "k-de", "cosi")]
    assert len(rows) == 5
    for row in rows:
        numbers = [float(cell) for cell in row[16:].split()]
        assert len(numbers) == 7 and all(v > 0 for v in numbers)


def test_a_full_disk_is_one_line_naming_the_path_and_leaves_no_temporary_file(tmp_path):
    import errno

    from lrlab.atomic import OutputPathError, atomic_write
    from lrlab.cli import os_error_text

    def full_disk(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    target = tmp_path / "report.md"
    with pytest.raises(OutputPathError) as info:
        atomic_write(target, full_disk)
    assert str(info.value) == f"cannot write {target}: no space left on device"
    assert list(tmp_path.iterdir()) == []
    assert os_error_text(PermissionError(13, "Permission denied", "/x")) == "/x: permission denied"


# --------------------------------------------------------------------------------------------
# scheduled hyper-parameters: --hyperparam KEY=CONFIG, --momentum CONFIG, a study's hyperparams

ONECYCLE = '{"type": "onecycle", "max_lr": 0.1, "total_steps": 30}'
MOMENTUM = {"type": "onecycle_momentum", "total_steps": 30}
DECAY = {"type": "cosine", "lr": 1e-3, "total": 20}


def _values(config, n):
    from lrlab import from_config

    return [float(v) for v in from_config(config).values(n)]


def test_lr_prints_a_column_per_hyperparameter(capsys):
    args = ["lr", ONECYCLE, "--steps", "31", "--momentum", json.dumps(MOMENTUM)]
    assert main([*args, "--hyperparam", f"weight_decay={json.dumps(DECAY)}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# step\tlr\tmomentum\tweight_decay"
    rows = [[float(x) for x in line.split("\t")] for line in lines[1:]]
    assert [r[0] for r in rows] == list(range(31))
    assert [r[1] for r in rows] == _values(json.loads(ONECYCLE), 31)
    assert [r[2] for r in rows] == _values(MOMENTUM, 31)
    assert [r[3] for r in rows] == _values(DECAY, 31)


def test_lr_json_with_hyperparameters_is_an_object(tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(MOMENTUM))
    assert (
        main(["lr", ONECYCLE, "--steps", "12", "--hyperparam", f"momentum={path}", "--json"]) == 0
    )
    got = json.loads(capsys.readouterr().out)
    assert got == {"lr": _values(json.loads(ONECYCLE), 12), "momentum": _values(MOMENTUM, 12)}
    assert main(["lr", ONECYCLE, "--steps", "3", "--json"]) == 0  # without them: the list
    assert isinstance(json.loads(capsys.readouterr().out), list)


def test_lr_with_hyperparameters_streams_many_steps_in_step(capsys, monkeypatch):
    from lrlab.cli import schedule_cmds

    monkeypatch.setattr(schedule_cmds, "CHUNK_STEPS", 7)
    policy = '{"type": "policy", "trigger": "epoch", "lr0": 0.9, "factor": 0.5}'
    args = ["lr", ONECYCLE, "--steps", "30", "--momentum", policy, "--metrics", "[1, 1, 1]"]
    assert main([*args, "--steps-per-epoch", "4", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["lr"] == _values(json.loads(ONECYCLE), 30)
    # replayed: one pop per epoch, the last state held after the metrics
    assert got["momentum"] == [0.9] * 4 + [0.45] * 4 + [0.225] * 4 + [0.1125] * 18


HYPER_STUDY = (
    STUDY
    + """
[schedules.cos.hyperparams.momentum]
type = "onecycle_momentum"
total_steps = "${total_steps}"
"""
)


def test_a_study_schedule_brings_its_hyperparameters(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(HYPER_STUDY)
    total = 3 * DIGITS_ITERATIONS
    assert main(["lr", f"{path}:cos", "--steps", str(total), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["momentum"] == _values({**MOMENTUM, "total_steps": total}, total)
    assert main(["lr", f"{path}:cos", "--steps", "2", "--momentum", json.dumps(MOMENTUM)]) == 2
    assert "already schedules 'momentum'" in capsys.readouterr().err


def test_plot_draws_a_panel_per_hyperparameter_sharing_x(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "s.toml"
    path.write_text(HYPER_STUDY)
    drawn = {}
    original = Figure.savefig

    def spy(fig, *args, **kwargs):
        for ax in fig.axes:
            drawn[ax.get_ylabel()] = {line.get_label(): list(line.get_ydata()) for line in ax.lines}
        drawn["shared"] = fig.axes[0].get_shared_x_axes().joined(fig.axes[0], fig.axes[-1])
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    out = tmp_path / "p.png"
    decay = f"weight_decay={json.dumps(DECAY)}"
    args = [f"{path}:cos", f"{path}:by_epoch", "--steps", "20", "-o", str(out), "--log"]
    assert main(["plot", *args, "--hyperparam", decay]) == 0
    assert list(drawn) == ["learning rate", "momentum", "weight_decay", "shared"]
    assert drawn["shared"] is True
    assert set(drawn["learning rate"]) == {"cos", "by_epoch"} == set(drawn["weight_decay"])
    total = 3 * DIGITS_ITERATIONS
    assert drawn["momentum"] == {"cos": _values({**MOMENTUM, "total_steps": total}, 20)}
    assert drawn["weight_decay"]["by_epoch"] == _values(DECAY, 20)


@pytest.mark.parametrize(
    "options,fragment",
    [
        (["--hyperparam", "momentum"], "--hyperparam must be KEY=CONFIG"),
        (["--hyperparam", "=x.json"], "--hyperparam must be KEY=CONFIG"),
        (["--hyperparam", 'lr={"type": "constant", "lr": 1}'], "--hyperparam lr: the learning"),
        (["--momentum", '{"type": "constant"}'], "--momentum: constant: missing required key"),
        (["--momentum", "{oops"], "--momentum: "),
        (["--momentum", "no-such.json"], "--momentum: "),
        (
            ["--hyperparam", 'weight_decay={"type": "cosinus", "lr": 1}'],
            "--hyperparam weight_decay: unknown schedule type 'cosinus'",
        ),
        (
            [
                "--momentum",
                json.dumps(MOMENTUM),
                "--hyperparam",
                f"momentum={json.dumps(MOMENTUM)}",
            ],
            "--hyperparam momentum: 'momentum' is given twice",
        ),
        (
            ["--momentum", '{"type": "linear", "lr": -1}'],
            "--momentum: linear.lr must be a finite number >= 0",
        ),
        (
            ["--momentum", '{"type": "policy", "trigger": "epoch", "lr0": 0.9, "factor": 0.5}'],
            "--momentum: this config is a policy",
        ),
    ],
)
@pytest.mark.parametrize("command", ["lr", "plot"])
def test_bad_hyperparameter_options_are_one_line(tmp_path, capsys, command, options, fragment):
    tail = ["-o", str(tmp_path / "p.png")] if command == "plot" else []
    assert main([command, ONECYCLE, "--steps", "5", *options, *tail]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_an_invalid_hyperparameter_value_names_the_key_and_step():
    import numpy as np

    from lrlab.cli.schedule_cmds import _check_finite

    with pytest.raises(
        ConfigError, match="the momentum config yields an invalid momentum -1.0 at step 6"
    ):
        _check_finite(np.array([0.9, -1.0]), 5, "momentum")


def test_preview_draws_a_panel_per_scheduled_hyperparameter(tmp_path):
    from lrlab.cli import preview

    path = tmp_path / "s.toml"
    path.write_text(HYPER_STUDY)
    panels, _ = preview.study_panels(path)
    total = 3 * DIGITS_ITERATIONS
    assert list(panels) == ["learning rate", "momentum"] and list(panels["momentum"]) == ["cos"]
    assert list(panels["momentum"]["cos"]) == _values({**MOMENTUM, "total_steps": total}, total)
    assert preview.study_curves(path)[0].keys() == panels["learning rate"].keys()
    out = tmp_path / "preview.png"
    assert preview.preview_study(path, out) == out and out.stat().st_size > 0
