"""The layers keep their direction: a lower layer never imports a higher one."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "lrlab"

LAYERS = {
    "atomic": 0,
    "errors": 0,
    "schedules": 1,
    "policies": 2,
    "torch": 3,
    "export": 3,
    "finder": 4,
    "lab": 5,
    "cli": 6,
}


def layer_of(dotted: str) -> int | None:
    parts = dotted.split(".")
    if parts[0] != "lrlab" or len(parts) < 2:
        return None
    return LAYERS.get(parts[1])


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            if node.module == "lrlab":
                yield from (f"lrlab.{alias.name}" for alias in node.names)


def test_no_module_imports_a_higher_layer():
    violations = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts)
        own = layer_of(module)
        if own is None:  # lrlab/__init__.py and __main__.py sit above the layers
            continue
        for name in imports(path):
            other = layer_of(name)
            if other is not None and other > own:
                violations.append(f"{module} (layer {own}) imports {name} (layer {other})")
    assert not violations, "\n".join(violations)


def test_every_package_is_assigned_a_layer():
    packages = {
        p.stem if p.is_file() else p.name
        for p in SRC.iterdir()
        if not p.name.startswith("_") and (p.suffix == ".py" or p.is_dir())
    }
    packages.discard("py")
    assert packages <= set(LAYERS), packages - set(LAYERS)
