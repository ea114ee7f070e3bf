"""ARCHITECTURE.md names every module of the package, so a newcomer finds where each thing lives."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_has_its_row_in_architecture():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    modules = sorted(p for p in (ROOT / "midigen").glob("*.py") if p.stem not in ("__init__", "__main__"))
    missing = [p.name for p in modules if f"`midigen/{p.name}`" not in text]
    assert not missing, f"modules without a row in ARCHITECTURE.md: {missing}"


def imported_modules(path: Path) -> set[str]:
    """The package's modules that ``path`` imports, anywhere in it (inside functions too)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("midigen."):
            found.add(node.module.split(".")[1])
    return found


def test_the_package_has_no_import_cycle():
    graph = {p.stem: imported_modules(p) for p in (ROOT / "midigen").glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for name in graph.get(start, ()):
            if name == goal or (name not in seen and reaches(name, goal, seen | {name})):
                return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert not cycles, f"modules on an import cycle: {cycles}"
