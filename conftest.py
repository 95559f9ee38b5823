"""Set-up for the whole suite (tests/ and the doctests under src/); tests/conftest.py marks the
integration tests and holds the fixtures tests share."""

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
