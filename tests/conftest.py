"""The ``integration`` marker, the fast suite, and the fixtures several test files share.

``pytest -m "not integration"`` is the fast suite a developer runs while editing. The files named
by ``INTEGRATION_FILES`` are integration tests as a whole; a file that mixes fast and slow tests
marks its slow ones with ``@pytest.mark.integration``. Plain helpers that test modules import are
in ``tests/helpers.py`` (``import conftest`` is ambiguous beside the root conftest.py).
"""

from __future__ import annotations

import helpers
import pytest

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


def fast_suite(config: pytest.Config) -> bool:
    """Whether this run is the fast suite, ``-m "not integration"``."""
    return " ".join(config.getoption("markexpr").split()) == "not integration"


def pytest_configure(config: pytest.Config) -> None:
    helpers.FAST_SUITE = fast_suite(config)  # fewer fuzz examples: helpers.fuzz_examples


def pytest_ignore_collect(collection_path, config):
    """The fast suite does not even import the integration files (their imports of transformers,
    Lightning, Ray and the examples cost seconds per worker); every other run collects them."""
    if collection_path.name.startswith(INTEGRATION_FILES) and fast_suite(config):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name.startswith(INTEGRATION_FILES):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def task(tmp_path_factory):
    """A small MNIST-1D (1,000 generated signals: 720 train / 80 val / 200 test), so a trial of
    a few epochs takes a fraction of a second; generated once per test process."""
    from lrlab.lab import tasks as T

    arrays = T.mnist1d_arrays(tmp_path_factory.mktemp("mnist1d-cache"), num_samples=1000)
    return T.make_task(
        "mnist1d", arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], 10
    )
