"""One lab trial under ``torchrun``: two gloo ranks on the CPU train it data-parallel.

``torchrun --standalone --nproc-per-node 2 -m lrlab.lab.torchrun_trial --spec spec.json`` runs in
its own session (killed as a group on timeout), through a small wrapper script (``DUMPER``) that
makes every rank also write its result and a checksum of its best weights, to compare ranks.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from helpers import child_env, run_in_session  # noqa: E402

import lrlab  # noqa: E402
from lrlab.lab.trainer import TrialSpec, iterations_per_epoch, train_trial  # noqa: E402

# digits: 1,293 training samples = 19 * 68 + 1, so the last global batch holds one sample and
# rank 1's shard of it is empty (the gradient must still be the global batch's mean)
CLR = {"type": "cyclic", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 7, "mode": "triangular2"}
SPEC = {"task": "digits", "model": "mlp", "epochs": 2, "batch_size": 68, "seed": 3, "schedule": CLR}


def _launch(args, *, cwd, timeout=120):
    """Run ``python args...`` in its own session (a hang is killed with torchrun's workers).
    Returns (exit status, stdout, stderr)."""
    env = child_env(OMP_NUM_THREADS="1")
    return run_in_session([sys.executable, *args], env=env, cwd=cwd, timeout=timeout)


DUMPER = """
import hashlib, json, sys
from pathlib import Path

import lrlab.lab.trainer as trainer
from lrlab.lab import torchrun_trial

real_train_trial = trainer.train_trial


def checksum(state):
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def dumping_train_trial(spec, **kwargs):
    result = real_train_trial(spec, keep_best_state=True, **kwargs)
    rank, world = trainer.rank_and_world()
    Path("dump").mkdir(exist_ok=True)
    dump = {"rank": rank, "world": world, "best_state_sha256": checksum(result.best_state),
            "result": result.to_dict()}
    Path(f"dump/rank{rank}.json").write_text(json.dumps(dump))
    return result


trainer.train_trial = dumping_train_trial  # torchrun_trial.run looks it up when it runs
sys.exit(torchrun_trial.main())
"""


def _torchrun_trial(spec: dict, tmp_path: Path):
    """The documented command on two ranks; returns (result dict, [rank 0 dump, rank 1 dump])."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "dumper.py").write_text(DUMPER)
    code, out, err = _launch(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "dumper.py",
            "--spec",
            "spec.json",
            "--out",
            "result.json",
            "--device",
            "cpu",
        ],
        cwd=tmp_path,
    )
    assert code == 0, out[-3000:] + err[-5000:]
    summary = [line for line in out.splitlines() if line.startswith("trial ")]
    assert len(summary) == 1 and "on 2 rank(s)" in summary[0], out  # rank 0 alone prints
    result = json.loads((tmp_path / "result.json").read_text())
    dumps = [json.loads((tmp_path / "dump" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [d["rank"] for d in dumps] == [0, 1] and all(d["world"] == 2 for d in dumps)
    return result, dumps


def _without_times(result: dict) -> dict:
    result = dict(result, wall_time=None)
    result["epochs"] = [dict(e, seconds=None) for e in result["epochs"]]
    return result


def test_trial_under_torchrun_matches_the_single_process_trial(tmp_path):
    result, dumps = _torchrun_trial(SPEC, tmp_path)
    spec = TrialSpec.from_dict(SPEC)
    assert result["spec"] == spec.to_dict() and not result["diverged"]
    epochs = result["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(math.isfinite(e[k]) for e in epochs for k in ("train_loss", "val_loss", "test_loss"))

    # every rank ended with the same weights and recorded the same numbers
    assert dumps[0]["best_state_sha256"] == dumps[1]["best_state_sha256"]
    assert _without_times(dumps[0]["result"]) == _without_times(dumps[1]["result"])
    assert _without_times(dumps[0]["result"]) == _without_times(result)
    assert result["best_epoch"] == 2  # so the compared weights are the final ones

    # the schedule's time axis is the single-process trial's: S global steps per epoch, and the
    # recorded rates are exactly the schedule's values at steps (e-1)*S ... e*S-1
    from lrlab.lab.tasks import load_task

    task = load_task("digits")
    n_train = len(task.y_train)
    assert n_train % SPEC["batch_size"] == 1  # the last batch: one sample, an empty shard on rank 1
    per_epoch = iterations_per_epoch(n_train, SPEC["batch_size"])
    clr = lrlab.from_config(CLR)
    for e in epochs:
        lrs = [clr(t) for t in range((e["epoch"] - 1) * per_epoch, e["epoch"] * per_epoch)]
        assert (e["lr_min"], e["lr_max"]) == (min(lrs), max(lrs))
        assert e["lr"] == pytest.approx(math.fsum(lrs) / len(lrs), rel=1e-12)

    # the single-process trial took the same global batches: the same rates at the same steps and
    # the same numbers up to float rounding (the gradient is summed in another order)
    single = train_trial(spec, task=task).to_dict()
    for mine, ref in zip(epochs, single["epochs"], strict=True):
        assert [mine[k] for k in ("lr", "lr_min", "lr_max")] == [
            ref[k] for k in ("lr", "lr_min", "lr_max")
        ]
        for key in ("train_loss", "val_loss", "test_loss"):
            assert mine[key] == pytest.approx(ref[key], rel=1e-4), key
        for key in ("train_acc", "val_acc", "test_acc"):
            assert mine[key] == pytest.approx(ref[key], abs=0.01), key


def test_divergence_stops_every_rank_at_the_same_epoch(tmp_path):
    spec = dict(SPEC, epochs=4, schedule={"type": "constant", "lr": 50.0})
    result, dumps = _torchrun_trial(spec, tmp_path)
    assert result["diverged"]
    assert 1 <= len(result["epochs"]) < 4
    assert not math.isfinite(result["epochs"][-1]["train_loss"])
    assert [len(d["result"]["epochs"]) for d in dumps] == [len(result["epochs"])] * 2
    assert all(d["result"]["diverged"] for d in dumps)


def test_bad_spec_is_one_error_line_and_status_2(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps(dict(SPEC, model="mpl")))
    code, _, err = _launch(
        ["-m", "lrlab.lab.torchrun_trial", "--spec", "spec.json"], cwd=tmp_path, timeout=60
    )
    assert code == 2, err
    assert err.count("\n") == 1 and "error:" in err and "did you mean 'mlp'" in err, err
    assert "Traceback" not in err and not (tmp_path / "result.json").exists()
