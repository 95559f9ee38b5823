"""The user's own trial function on Ray: the study folder is shipped as the job's working_dir.

A module of its own, because Ray ships a folder only when the job starts: this module's executor
starts a fresh local instance (2 CPUs) with the study folder, after test_integration_ray's
instance is shut down.
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'lrlab[integrations]')")

from lrlab.lab.store import Store  # noqa: E402
from lrlab.lab.study import load_study  # noqa: E402
from lrlab.lab.sweep import run_sweep  # noqa: E402

USER_TRIAL = """
import os

def train(trial):
    here = os.path.dirname(os.path.abspath(__file__))
    for epoch in (1, 2):
        trial.report(epoch, val_loss=float(trial.schedule(0)) + 0.01 * trial.seed / epoch)
    # 1 when this module was imported from the copy of the study folder Ray shipped
    return {"shipped": float(here != trial.settings["folder"])}
"""


def test_a_user_trial_reaches_ray_workers_with_its_folder(tmp_path):
    from lrlab.lab.ray_executor import RayExecutor

    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    (tmp_path / "raytrial.py").write_text(USER_TRIAL)
    path = tmp_path / "study.toml"
    path.write_text(
        'trial = "raytrial:train"\nobjective = "val_loss"\nmode = "min"\nseeds = 2\n'
        f'[settings]\nfolder = "{tmp_path}"\n'
        '[schedules.a]\ntype = "constant"\nlr = 0.1\n'
        '[schedules.b]\ntype = "constant"\nlr = 0.2\n'
    )
    study = load_study(path)
    executor = RayExecutor(workers=2, threads=1)
    try:
        with Store(tmp_path / "r.sqlite") as store:
            summary = run_sweep(study, store, executor=executor, progress=False)
            assert (summary.done, summary.failed) == (4, 0)
            trials = store.study_trials(study.name)
    finally:
        executor.close()
    assert not ray.is_initialized()
    assert {t.final["shipped"] for t in trials} == {1.0}  # imported from the shipped copy
    assert sorted(t.metrics["val_loss"][-1] for t in trials) == pytest.approx(
        sorted(lr + 0.01 * seed / 2 for lr in (0.1, 0.2) for seed in (0, 1))
    )
