"""ARCHITECTURE.md names every module of the package, so a newcomer finds where each thing lives."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_has_its_row_in_architecture():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    modules = sorted(p for p in (ROOT / "midigen").glob("*.py") if p.stem not in ("__init__", "__main__"))
    missing = [p.name for p in modules if f"`midigen/{p.name}`" not in text]
    assert not missing, f"modules without a row in ARCHITECTURE.md: {missing}"
