"""Replays: the authors' recorded MNIST histories against METHODS.md's table, and the CLI preview."""

import json
from pathlib import Path

import pytest

import lrlab
from lrlab.cli import main
from lrlab.errors import ConfigError
from lrlab.policies import load_metrics, replay

REPO = Path(__file__).resolve().parents[1]
HISTORIES = REPO / ".." / "shared" / "data" / "lr-investigation-mnist-histories.json"
SAMPLE = REPO / "examples" / "sample_val_losses.json"
R0 = 0.01
SEQS = ("seq1", "seq2", "seq3", "seq4")

# METHODS.md section 3, "Recorded histories for replay tests":
# row -> (run-name strategy, policy keys, pops for seq1..seq4, final LR / r0 for seq4)
TABLE = {
    "by epoch": ("epoch", {"trigger": "epoch"}, (50, 50, 50, 50), 0.02),
    "by cutoff": ("cutoff", {"trigger": "cutoff", "rate": 0.01, "shrink": 0.2}, (5, 5, 5, 5), 0.6),
    "by oscillate, authors' code": (
        "oscillate",
        {"trigger": "oscillation", "authors_bug": True},
        (13, 20, 16, 19),
        0.1,
    ),
    "by oscillate, as specified": ("oscillate", {"trigger": "oscillation"}, (12, 19, 15, 18), 0.15),
}


@pytest.fixture(scope="module")
def runs():
    if not HISTORIES.is_file():
        pytest.skip(
            f"recorded histories not found at {HISTORIES} (the shared data folder is absent)"
        )
    return json.loads(HISTORIES.read_text())["runs"]


def seq_policy(keys, kind):
    return lrlab.from_config(
        {"type": "policy", **keys, "values": {"type": "sequence", "kind": kind, "lr": R0}}
    )


@pytest.mark.parametrize("row", list(TABLE))
def test_recorded_histories_reproduce_the_methods_table(runs, row):
    strategy, keys, expected_pops, expected_final = TABLE[row]
    got = []
    for kind in SEQS:
        losses = runs[f"{kind}-{strategy}"]["valid_loss"]
        assert len(losses) == 50
        r = replay(seq_policy(keys, kind), losses)
        assert r.pops == len(r.pop_epochs) <= 50
        got.append(r.pops)
        if kind == "seq4":
            assert r.final_lr / R0 == pytest.approx(expected_final, rel=1e-12)
    print(f"{row}: pops {got} (METHODS.md {list(expected_pops)})")
    assert tuple(got) == expected_pops


def test_recorded_cutoff_pop_epochs(runs):
    """The cutoff decisions written out (0-based epochs), so a change in the rule shows where."""
    expected = {
        "seq1": [2, 3, 5, 12, 27],
        "seq2": [2, 5, 10, 35, 39],
        "seq3": [2, 5, 10, 20, 32],
        "seq4": [2, 5, 10, 13, 15],
    }
    for kind in SEQS:
        r = replay(seq_policy(TABLE["by cutoff"][1], kind), runs[f"{kind}-cutoff"]["valid_loss"])
        assert r.pop_epochs == expected[kind]


def test_authors_bug_differs_from_the_specified_rule_only_by_the_epoch_one_pop(runs):
    for kind in SEQS:
        losses = runs[f"{kind}-oscillate"]["valid_loss"]
        buggy = replay(seq_policy(TABLE["by oscillate, authors' code"][1], kind), losses).pop_epochs
        spec = replay(seq_policy(TABLE["by oscillate, as specified"][1], kind), losses).pop_epochs
        assert buggy == [0] + spec


def test_replay_with_steps_per_epoch_holds_each_epoch_rate(runs):
    losses = runs["seq3-oscillate"]["valid_loss"]
    p = seq_policy({"trigger": "oscillation"}, "seq3")
    per_epoch = replay(p, losses)
    per_step = replay(p, losses, steps_per_epoch=7)
    assert per_step.pop_epochs == per_epoch.pop_epochs
    assert per_step.lrs == [lr for lr in per_epoch.lrs for _ in range(7)]
    assert per_step.final_lr == per_epoch.final_lr
    longer = replay(p, losses, steps_per_epoch=7, steps=7 * 50 + 3)
    assert longer.lrs[-4:] == [per_epoch.lrs[-1]] + [per_epoch.final_lr] * 3
    assert replay(p, losses, steps_per_epoch=7, steps=10).lrs == per_step.lrs[:10]


def test_replay_of_a_plain_schedule_ignores_the_metrics():
    r = replay({"type": "cosine", "lr": 1.0, "total": 4}, [1.0, 2.0], steps_per_epoch=2)
    assert r.lrs == [
        float(v) for v in lrlab.from_config({"type": "cosine", "lr": 1.0, "total": 4}).values(4)
    ]
    assert r.pop_epochs == [] and r.state is None


def test_replay_rejects_bad_arguments():
    p = {"type": "policy", "trigger": "epoch", "factor": 0.5, "lr0": 1.0}
    with pytest.raises(ConfigError, match="steps-per-epoch"):
        replay(p, [1.0], steps_per_epoch=0)
    with pytest.raises(ConfigError, match="list of numbers"):
        replay(p, ["a"])
    with pytest.raises(ConfigError):
        replay(42, [1.0])


# ------------------------------------------------------------------------------------ CLI

POLICY = (
    '{"type": "policy", "trigger": "oscillation", '
    '"values": {"type": "sequence", "kind": "seq1", "lr": 0.01}}'
)


def test_sample_history_is_a_json_list():
    values = load_metrics(str(SAMPLE))
    assert len(values) == 12 and all(isinstance(v, float) for v in values)


def test_cli_lr_replays_a_metric_file(capsys):
    assert (
        main(
            [
                "lr",
                POLICY,
                "--steps",
                "26",
                "--steps-per-epoch",
                "2",
                "--metrics",
                str(SAMPLE),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    expected = replay(lrlab.from_config(json.loads(POLICY)), load_metrics(str(SAMPLE)), 2, steps=26)
    assert out == expected.lrs
    # rises at epochs 6, 9, 10 of the sample -> seq1 pops 1, 2, 3 from steps 14, 20, 22
    assert out == [0.01] * 14 + [0.005] * 6 + [0.01 / 3] * 2 + [0.0025] * 4
    assert main(["lr", POLICY, "--steps", "4", "--metrics", "[1.0, 2.0, 3.0]"]) == 0
    assert capsys.readouterr().out.split("\n")[:4] == [
        "0\t0.01",
        "1\t0.01",
        "2\t0.005",
        "3\t0.0033333333333333335",
    ]


def test_cli_lr_schedules_keep_working_and_policies_need_metrics(capsys):
    assert main(["lr", '{"type": "constant", "lr": 0.1}', "--steps", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [0.1, 0.1]
    assert (
        main(
            [
                "lr",
                '{"type": "constant", "lr": 0.1}',
                "--steps",
                "2",
                "--json",
                "--metrics",
                str(SAMPLE),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == [0.1, 0.1]
    assert main(["lr", POLICY, "--steps", "3"]) == 2
    assert "--metrics" in capsys.readouterr().err
    assert (
        main(["lr", '{"type": "constant", "lr": 0.1}', "--steps", "2", "--steps-per-epoch", "3"])
        == 2
    )
    assert "needs --metrics" in capsys.readouterr().err
    assert main(["lr", POLICY, "--steps", "3", "--metrics", "/nonexistent.json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrlab lr: error:") and "Traceback" not in err
    assert main(["lr", POLICY, "--steps", "3", "--metrics", '{"a": 1}']) == 2
    assert main(["lr", POLICY, "--steps", "3", "--metrics", "[1]", "--steps-per-epoch", "0"]) == 2


def test_cli_metrics_file_may_be_an_authors_run_or_contain_nulls(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"valid_loss": [1.0, None, 2.0], "valid_accuracy": [0.1, 0.2, 0.3]}))
    assert load_metrics(str(path))[0] == 1.0
    assert main(["lr", POLICY, "--steps", "4", "--metrics", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [0.01, 0.01, 0.01, 0.005]


def test_cli_plot_with_metrics(tmp_path, capsys):
    out = tmp_path / "p.png"
    assert (
        main(
            [
                "plot",
                POLICY,
                '{"type": "constant", "lr": 0.01}',
                "--steps",
                "24",
                "--steps-per-epoch",
                "2",
                "--metrics",
                str(SAMPLE),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert out.is_file() and out.stat().st_size > 1000
    assert main(["plot", POLICY, "--steps", "24", "-o", str(out)]) == 2


def test_cli_schedules_lists_the_triggers(capsys):
    assert main(["schedules", "--json"]) == 0
    rows = {r["type"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["policy"]["triggers"] == ["epoch", "cutoff", "oscillation", "plateau"]
    assert any(
        k.startswith("plateau:") and "patience=10" in k for k in rows["policy"]["trigger keys"]
    )
