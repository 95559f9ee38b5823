"""The lrlab command: lr, plot, schedules, papers; bad input is one line and a non-zero exit."""

import json
import subprocess
import sys

import pytest

from lrlab.cli import main

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


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["lr", '{"type": "cosine", "lr": -1, "total": 5}', "--steps", "3"], "cosine.lr must be"),
        (["lr", '{"type": "cosin", "lr": 1}', "--steps", "3"], "did you mean 'cosine'"),
        (["lr", "missing-file.json", "--steps", "3"], "neither inline JSON nor an existing"),
        (["lr", CLR, "--steps", "0"], "--steps must be"),
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
