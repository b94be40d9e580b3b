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


# Adapter modules that still call a store module themselves: each one a debt, not a pattern.
STORE_CALLERS_LEFT = {
    "api/routes/public.py",  # /ready's SELECT 1
    "cli/demo.py",  # the demo's sample rows
}


def store_calls(path: Path) -> list[str]:
    """The store modules a module imports to call (a type from one, such as Page, is fine)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("engine.store")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "engine.store":
                found += [f"engine.store.{alias.name}" for alias in node.names]
            elif node.module.startswith("engine.store."):
                found += [
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if not alias.name[:1].isupper()
                ]
    return found


def test_adapters_call_the_engine_not_the_store() -> None:
    """Adapters are thin and the engine decides: only the engine calls the store, which alone
    speaks SQL (DESIGN.md, Layering)."""
    calls = {
        str(path.relative_to(ROOT)): store_calls(path)
        for package in sorted(ADAPTERS)
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    wrong = {path: found for path, found in calls.items() if found}
    assert set(wrong) == STORE_CALLERS_LEFT, wrong


# What a migration may not import: the live code, which changes after the migration is written.
LIVE = ADAPTERS | {"engine", "models"}


def test_migrations_import_none_of_the_live_code() -> None:
    """A migration does forever what it did when written: one that imported the engine's code
    or the models would run today's version of it against its own revision's schema."""
    found = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & LIVE)
        for path in sorted((ROOT / "migrations" / "versions").glob("*.py"))
    }
    assert found, "no migration found"
    assert not {path: names for path, names in found.items() if names}
