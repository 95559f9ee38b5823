"""Shared test set-up for the whole suite (tests/ and the doctests under src/)."""

import importlib.util
import sys
import types

# Doctest collection imports every module under src/; the entry point would run the CLI.
collect_ignore = ["src/lrlab/__main__.py"]


def _timm_scheduler_without_models() -> None:
    """Let ``import timm.scheduler`` work without torchvision.

    timm's package ``__init__`` imports its models, which need torchvision, and PyPI's
    torchvision does not import beside the pinned CPU torch (scripts/install.sh). timm's
    ``scheduler`` package needs only torch, so timm is registered as a bare package and its
    real scheduler code is imported from the installed wheel, unchanged.
    """
    if "timm" in sys.modules:
        return
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return
    package = types.ModuleType("timm")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["timm"] = package


_timm_scheduler_without_models()

#: Test files that start real frameworks (DDP, Ray, Lightning, HF, torch.compile, JAX/Keras),
#: subprocesses or whole studies: marked ``integration``, so that ``pytest -m "not integration"``
#: is the fast suite a developer runs while editing.
INTEGRATION_FILES = (
    "test_integration_",
    "test_examples",
    "test_docs",
    "test_export",
    "test_lab_concurrency",
    "test_lab_ray_usercode",
    "test_lab_torchrun",
    "test_lab_sweep",
    "test_cli_compare",
    "test_finder_cli",
    "test_policies_torch",  # two gloo ranks, resumes in new processes
    "test_lab_api",  # scripts run in subprocesses
    "test_lab_trial",
)


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if item.path.name.startswith(INTEGRATION_FILES):
            item.add_marker(pytest.mark.integration)
