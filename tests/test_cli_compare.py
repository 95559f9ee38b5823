"""`lrlab compare`: listing, one-line errors with exit status 2, a tiny study end to end."""

from __future__ import annotations

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
    for name in ("report.md", "lr_curves.png", "val_acc.png", "results.sqlite"):
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
