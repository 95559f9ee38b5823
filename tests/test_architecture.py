"""The layers keep their direction: a lower layer never imports a higher one.

The layers as they are (docs/ARCHITECTURE.md):

0. ``lrlab.errors``, ``lrlab.atomic``, ``lrlab.validate``: used by every layer.
1-3. the core: ``lrlab.schedules`` -> ``lrlab.policies`` -> the adapters ``lrlab.torch`` and
   ``lrlab.export``.
4. two applications side by side, ``lrlab.finder`` (the range test) and ``lrlab.lab`` (the lab):
   each uses the core, neither imports the other.
5. ``lrlab.cli``, the command, over both applications.

Imports are read from the source (``import``/``from`` statements anywhere in a module, lazy
ones inside functions included), so a function-level import cannot dodge the rule.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "lrlab"

LAYERS = {
    "atomic": 0,
    "errors": 0,
    "validate": 0,
    "schedules": 1,
    "policies": 2,
    "torch": 3,
    "export": 3,
    "finder": 4,
    "lab": 4,
    "cli": 5,
}

#: packages of one layer that must not import each other
SIBLINGS = {("finder", "lab"), ("lab", "finder")}


def package_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "lrlab" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            if node.module == "lrlab":
                yield from (f"lrlab.{alias.name}" for alias in node.names)


def module_imports():
    """(module, its package, imported lrlab package) for every import of a layered module."""
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        own = package_of(module)
        if own is None:  # lrlab/__init__.py and __main__.py sit above the layers
            continue
        for name in imports(path):
            other = package_of(name)
            if other is not None and other != own:
                yield module, own, other, name


def test_no_module_imports_a_higher_layer():
    violations = [
        f"{module} (layer {LAYERS[own]}) imports {name} (layer {LAYERS[other]})"
        for module, own, other, name in module_imports()
        if LAYERS[other] > LAYERS[own]
    ]
    assert not violations, "\n".join(violations)


def test_the_applications_never_import_each_other():
    violations = [
        f"{module} imports {name}"
        for module, own, other, name in module_imports()
        if (own, other) in SIBLINGS
    ]
    assert not violations, "\n".join(violations)


def test_layer_zero_imports_no_other_layer():
    violations = [
        f"{module} imports {name}"
        for module, own, other, name in module_imports()
        if LAYERS[own] == 0 and LAYERS[other] != 0
    ]
    assert not violations, "\n".join(violations)


def test_the_checker_sees_lazy_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        "def f():\n    from lrlab.lab.study import load_study\n    import lrlab.finder\n"
    )
    assert list(imports(path)) == ["lrlab.lab.study", "lrlab.finder"]


def test_every_package_is_assigned_a_layer():
    packages = {
        p.stem if p.is_file() else p.name
        for p in SRC.iterdir()
        if not p.name.startswith("_") and (p.suffix == ".py" or p.is_dir())
    }
    packages.discard("py")
    assert packages <= set(LAYERS), packages - set(LAYERS)
    assert LAYERS["validate"] == 0 and LAYERS["finder"] == LAYERS["lab"]
