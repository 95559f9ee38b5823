"""The lab's sweep on Ray: a tiny study on a local Ray instance, gathered into the same SQLite store.

One Ray instance (2 CPUs, no dashboard) serves the whole module. The driver keeps the resume
rules: a second run trains nothing, a failed trial is retried by the next run, and the results
are the very numbers a local run gives (the trainer is deterministic on the CPU).
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'lrlab[integrations]')")
pytest.importorskip("sklearn")  # the digits task

from lrlab.lab.store import Store  # noqa: E402
from lrlab.lab.study import load_study  # noqa: E402
from lrlab.lab.sweep import EXECUTORS, InlineExecutor, make_executor, run_sweep  # noqa: E402

STUDY = """
description = "tiny: two schedules x two seeds on digits"
task = "digits"
model = "mlp"
epochs = 2
batch_size = 64
seeds = 2
optimizer = { type = "sgd", momentum = 0.9 }

[schedules.ralr]
type = "ralr"
base = { type = "cosine", lr = 0.1, total = "${total_steps}" }
period = "${steps_per_epoch}"
seed = "${seed}"

[schedules.clr]
type = "cyclic"
base_lr = 0.01
max_lr = 0.1
step_size_up = "${steps_per_epoch}"
"""


@pytest.fixture(scope="module")
def ray_executor():
    """One executor for the module; it starts a local Ray instance (2 CPUs) on first use and shuts
    it down on close(), which the teardown checks."""
    from lrlab.lab.ray_executor import RayExecutor

    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    executor = RayExecutor(workers=2, threads=1)
    yield executor
    started = executor._started_ray
    executor.close()
    assert not (started and ray.is_initialized()), "close() must shut down the instance it started"


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(STUDY)
    return load_study(path)


def test_sweep_on_ray_fills_the_store_and_resumes(ray_executor, study, tmp_path):
    db = tmp_path / "results.sqlite"
    with Store(db) as store:
        summary = run_sweep(study, store, executor=ray_executor, progress=False)
        assert ray.is_initialized() and ray_executor._started_ray  # a local instance, by default
        assert ray.cluster_resources()["CPU"] == 2
        assert (summary.total, summary.ran, summary.done, summary.failed) == (4, 4, 4, 0)
        trials = store.study_trials(study.name)
        assert len(trials) == 4 and all(t.status == "done" for t in trials)
        # a rerun trains nothing: every trial is finished in the store
        again = run_sweep(study, store, executor=ray_executor, progress=False)
        assert (again.skipped, again.ran) == (4, 0)
        ray_results = {t.key: (t.final["best_val_loss"], t.final["test_acc"]) for t in trials}
    # the same trials run inline in this process give the same numbers
    with Store(tmp_path / "inline.sqlite") as store:
        run_sweep(study, store, executor=InlineExecutor(), progress=False)
        inline = {
            t.key: (t.final["best_val_loss"], t.final["test_acc"])
            for t in store.study_trials(study.name)
        }
    assert inline == ray_results


def test_ray_is_a_registered_executor(ray_executor):
    assert "ray" in EXECUTORS
    executor = make_executor("ray", workers=2, threads=1, address=None)
    assert type(executor) is type(ray_executor) and executor.workers == 2
    executor.close()


def test_a_failed_trial_is_recorded_and_retried(ray_executor, study, tmp_path):
    """A trial that raises on Ray is stored as failed (one line); the next run retries only it."""
    from lrlab.lab.sweep import execute_trial

    bad = next(c.key for c in study.cells if c.schedule == "clr" and c.seed == 1)

    def flaky(spec, *, device=None, threads=1):  # pickled by value: workers need not import tests
        if spec.key() == bad:
            raise RuntimeError("boom\nsecond line")
        return execute_trial(None, spec, device, threads)[0]

    executor = make_executor("ray", workers=2, trial_fn=flaky)
    try:
        with Store(tmp_path / "r.sqlite") as store:
            first = run_sweep(study, store, executor=executor, progress=False)
            assert (first.done, first.failed) == (3, 1)
            assert store.trial_status()[bad] == "failed"
            second = run_sweep(study, store, executor=ray_executor, progress=False)
            assert (second.skipped, second.ran, second.done) == (3, 1, 1)
            assert store.trial_status()[bad] == "done"
            assert store.attempts()[bad] == 2
    finally:
        executor.close()


def test_lrlab_compare_executor_ray(ray_executor, tmp_path, capsys):
    """``lrlab compare STUDY --executor ray`` end to end (on the module's running Ray instance),
    then again: everything is already in the database."""
    from lrlab.cli import main

    ray_executor._connect()  # make sure the module's instance is up (the CLI then joins it)
    path = tmp_path / "tiny.toml"
    path.write_text(STUDY)
    argv = [
        "compare",
        str(path),
        "--executor",
        "ray",
        "--workers",
        "2",
        "--no-progress",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "4 trials run (4 done, 0 diverged, 0 failed), 0 already in the database" in err
    assert (tmp_path / "out" / "report.md").is_file()
    assert ray.is_initialized()  # the CLI's executor joined the instance, so it left it running
    assert main(argv) == 0
    assert (
        "0 trials run (0 done, 0 diverged, 0 failed), 4 already in the database"
        in capsys.readouterr().err
    )


def test_a_ray_client_address_without_grpc_is_one_line(monkeypatch):
    """``ray://`` needs Ray Client (grpcio); without it the user gets one line, not a traceback."""
    import builtins

    from lrlab.errors import LrlabError
    from lrlab.lab.ray_executor import _check_client

    real_import = builtins.__import__

    def no_grpc(name, *args, **kwargs):
        if name == "grpc":
            raise ImportError("No module named 'grpc'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_grpc)
    with pytest.raises(LrlabError) as info:
        _check_client("ray://head:10001")
    assert "ray[client]" in str(info.value) and "\n" not in str(info.value)
    _check_client("127.0.0.1:6379")  # a plain address needs no client
