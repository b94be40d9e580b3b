"""The layers import downwards only: wiring/ assembles the adapters, which do not know one another
(the API neither imports Celery's tasks nor the dashboard), and the engine knows no adapter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = {"api", "cli", "tasks", "web", "wiring"}
# What each package may not import.
FORBIDDEN = {
    "models": ADAPTERS | {"engine"},
    "engine": ADAPTERS,
    "api": {"tasks", "web", "cli", "wiring"},
    "tasks": {"api", "web", "cli", "wiring"},
    "web": {"api", "tasks", "cli", "wiring"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports, wherever in the module the import is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_no_layer_above_or_beside_it(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert not {path: names for path, names in wrong.items() if names}
