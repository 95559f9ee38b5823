"""`lrlab compare`: listing, one-line errors with exit status 2, a tiny study end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from lrlab.cli import main
from lrlab.lab.store import Store
from lrlab.lab.study import builtin_studies

TINY = textwrap.dedent(
    """
    name = "tiny"
    task = "digits"
    model = "mlp"
    epochs = 2
    batch_size = 64
    seeds = 2
    baseline = "fixed"
    target_acc = "baseline"

    [schedules.fixed]
    type = "constant"
    lr = 0.05

    [schedules.cosine]
    type = "cosine"
    lr = 0.1
    total = "${total_steps}"
    """
)


def test_list_names_every_builtin_study(capsys):
    assert main(["compare", "--list"]) == 0
    out = capsys.readouterr().out
    for name in builtin_studies():
        assert name in out


def test_bad_study_file_is_one_line_on_stderr_with_status_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("epochs = 2", "epohcs = 2"))
    proc = subprocess.run(
        [sys.executable, "-m", "lrlab", "compare", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "unknown field 'epohcs' (did you mean 'epochs'?)" in lines[0]
    assert lines[0].startswith("lrlab compare: error: ")
    assert not (tmp_path / "lrlab-out").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["compare", "defualt"], "unknown study 'defualt' (did you mean 'default'?)"),
        (["compare", "missing.toml"], "study file missing.toml does not exist"),
        (["compare", "bad_lr.toml"], "schedules.fixed: constant.lr must be a finite number"),
        (["compare", "tiny.toml", "--report-only"], "holds no results of study 'tiny'"),
    ],
)
def test_other_user_errors_exit_2(tmp_path, monkeypatch, capsys, args, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "bad_lr.toml").write_text(TINY.replace("lr = 0.05", 'lr = "fast"'))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err


def test_tiny_study_through_the_cli_then_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    assert main(["compare", "tiny.toml", "--workers", "0", "--no-progress"]) == 0
    captured = capsys.readouterr()
    out_dir = tmp_path / "lrlab-out" / "tiny"
    for name in ("report.md", "lr_curves.png", "curves.png", "results.sqlite"):
        assert (out_dir / name).is_file()
        assert name in captured.out
    assert "fixed" in captured.out and "cosine" in captured.out and "verdict" in captured.out
    assert "4 trials run (4 done" in captured.err
    with Store(out_dir / "results.sqlite") as store:
        first = {t.key: t.final["test_acc"] for t in store.study_trials("tiny")}
    # again, with an explicit --db and --out: nothing is retrained
    assert (
        main(
            [
                "compare",
                "tiny.toml",
                "--workers",
                "0",
                "--no-progress",
                "--db",
                str(out_dir / "results.sqlite"),
                "--out",
                str(tmp_path / "again"),
            ]
        )
        == 0
    )
    assert (
        "0 trials run (0 done, 0 diverged, 0 failed), 4 already in the database"
        in capsys.readouterr().err
    )
    assert (tmp_path / "again" / "report.md").read_text() == (out_dir / "report.md").read_text()
    # --seeds 3 adds only the new seed's trials, --report-only trains nothing
    assert main(["compare", "tiny.toml", "--workers", "0", "--no-progress", "--seeds", "3"]) == 0
    assert "2 trials run" in capsys.readouterr().err
    assert main(["compare", "tiny.toml", "--seeds", "3", "--report-only"]) == 0
    with Store(out_dir / "results.sqlite") as store:
        trials = store.study_trials("tiny")
        assert len(trials) == 6 and set(store.attempts().values()) == {1}
        assert all(first[t.key] == t.final["test_acc"] for t in trials if t.key in first)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--device", "tpu"], "--device must be one of auto, cpu, cuda, cuda:N, mps, got 'tpu'"),
        (["--out", "afile"], "--out afile is a file, not a folder"),
        (["--db", "adir"], "--db adir is a folder, not a database file"),
        (["--set", "oops"], "--set must be NAME=VALUE"),
    ],
)
def test_options_are_checked_before_any_work(tmp_path, monkeypatch, capsys, args, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    assert main(["compare", "tiny.toml", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err
    assert not (tmp_path / "lrlab-out").exists()


def test_cuda_without_cuda_is_one_line(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    assert main(["compare", "tiny.toml", "--device", "cuda"]) == 2
    assert "--device cuda: CUDA is not available here (use --device cpu)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('name = "tiny"', 'name = ".."'), "name must be letters, digits"),
        (('name = "tiny"', 'name = "."'), "name must be letters, digits"),
        (("seeds = 2", "seeds = 100000000"), "seeds must be a count from 1 to 10000"),
        (("epochs = 2", "epochs = 2.0"), None),  # an integral float is an integer, as in TrialSpec
        (('"${total_steps}"', '"${' + "9" * 400 + ' * total_steps}"'), "is too large"),
        (('"${total_steps}"', '"${2**20 * 2**20 * total_steps}"'), "may only use numbers"),
        (('"${total_steps}"', '"${1048576 * 1048576 * 1048576}"'), "beyond 2**53"),
        (('"${total_steps}"', '"${' + "+".join(["1"] * 3000) + '}"'), "longer than 500"),
        (('"${total_steps}"', '"${' + "(" * 300 + "1" + ")" * 300 + '}"'), "longer than 500"),
        (('"${total_steps}"', '"${' + "9" * 400 + '}"'), "is too large"),
    ],
)
def test_hostile_study_values_are_one_line(tmp_path, monkeypatch, capsys, change, expected):
    monkeypatch.chdir(tmp_path)
    assert change[0] in TINY
    (tmp_path / "tiny.toml").write_text(TINY.replace(*change))
    if expected is None:
        from lrlab.lab.study import load_study

        assert load_study(tmp_path / "tiny.toml").epochs == 2
        return
    assert main(["compare", "tiny.toml"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err


def test_a_json_study_is_told_studies_are_toml(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.json").write_text('{"task": "digits"}')
    assert main(["compare", "study.json"]) == 2
    assert "studies are TOML files (.toml), not JSON" in capsys.readouterr().err


def test_a_full_disk_while_writing_the_report_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    import lrlab.atomic

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY.replace("seeds = 2", "seeds = 1"))

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(lrlab.atomic, "atomic_write", full)
    assert main(["compare", "tiny.toml", "--workers", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "no space left on device" in err[-1].lower() and "Traceback" not in "".join(err)


FAILING_TRIAL = """
def train(trial):
    if trial.seed == 1:
        raise ValueError("seed 1 is cursed")
    trial.report(1, val_loss=0.5)
"""


def test_a_failing_user_trial_sets_the_exit_status_and_the_report_shows_it(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "failing.py").write_text(FAILING_TRIAL)
    (tmp_path / "s.toml").write_text(
        'trial = "failing:train"\nobjective = "val_loss"\nmode = "min"\nseeds = 2\n'
        '[schedules.a]\ntype = "constant"\nlr = 0.1\n'
    )
    assert main(["compare", "s.toml", "--workers", "0", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "1 trial(s) failed" in err
    report = (tmp_path / "lrlab-out" / "s" / "report.md").read_text()
    assert "ValueError: seed 1 is cursed" in report


def test_preview_plots_the_study_and_trains_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    assert main(["compare", "tiny.toml", "--preview", "-o", "lr.pdf"]) == 0
    assert (tmp_path / "lr.pdf").read_bytes().startswith(b"%PDF")
    assert "preview: lr.pdf" in capsys.readouterr().out
    assert not (tmp_path / "lrlab-out" / "tiny" / "results.sqlite").exists()


def test_until_decided_reports_seeds_per_schedule(tmp_path, monkeypatch, capsys):
    """Seeds are added until decided or the cap: the table gives each schedule's seed count."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    args = ["compare", "tiny.toml", "--workers", "0", "--no-progress", "--until-decided"]
    assert main([*args, "--max-seeds", "4"]) == 0
    out = capsys.readouterr().out
    assert "seeds" in out and "cosine" in out
    summary = json.loads((tmp_path / "lrlab-out" / "tiny" / "summary.json").read_text())
    rows = summary["until_decided"]["schedules"]
    assert all(3 <= row["seeds"] <= 4 and row["pairs"] == row["seeds"] for row in rows), rows
    with Store(tmp_path / "lrlab-out" / "tiny" / "results.sqlite") as store:
        trials = store.study_trials("tiny")  # every seed a round added stays in the study
    assert len({t.seed for t in trials if t.schedule == "cosine"}) == rows[0]["seeds"]


@pytest.mark.parametrize("columns", ["80", "120", None])
def test_the_printed_table_fits_and_never_cuts_a_number(tmp_path, monkeypatch, capsys, columns):
    """``COLUMNS=80 lrlab compare`` and ``lrlab compare | cat``: no cell cut to '…'."""
    monkeypatch.chdir(tmp_path)
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    (tmp_path / "tiny.toml").write_text(TINY)
    assert main(["compare", "tiny.toml", "--workers", "0", "--no-progress"]) == 0
    table = capsys.readouterr().out.split("report:")[0]
    assert "…" not in table and "cosine" in table and "fixed" in table
    width = int(columns) if columns else 180
    assert max(len(line) for line in table.splitlines()) <= width
