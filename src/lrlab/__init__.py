"""lrlab: exact, composable learning-rate schedules, an LR range test, and a lab to compare them.

The top level is light (no torch import): ``lrlab.torch``, ``lrlab.finder`` and ``lrlab.lab``
are imported on first use.
"""

from lrlab import schedules
from lrlab.errors import ConfigError, LrlabError
from lrlab.schedules import Schedule, dump_config, from_config, load_config

__version__ = "0.1.0"

from lrlab import policies  # noqa: F401 - registers the policy config types in the registry

__all__ = [
    "ConfigError",
    "LrlabError",
    "Schedule",
    "__version__",
    "dump_config",
    "from_config",
    "load_config",
    "range_test",
    "schedules",
]


def __getattr__(name):
    if name == "range_test":
        from lrlab.finder import range_test

        return range_test
    raise AttributeError(f"module 'lrlab' has no attribute {name!r}")
