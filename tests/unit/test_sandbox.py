"""The tests' own rules: a tier per folder, a marker per tier, and the Redis sentinel's database."""

from __future__ import annotations

import tomllib

import pytest

from tests.conftest import HERE, TIERS, for_worker, sentinel_url


def test_every_tier_is_a_folder_and_a_registered_marker() -> None:
    options = tomllib.loads((HERE.parent / "pyproject.toml").read_text())["tool"]["pytest"]
    registered = {line.split(":")[0] for line in options["ini_options"]["markers"]}
    assert registered == set(TIERS)
    folders = {path.name for path in HERE.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders == set(TIERS), "a new folder of tests is a new tier: register its marker"


def test_this_test_carries_its_tier(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("integration") is None


@pytest.mark.parametrize(
    ("configured", "databases", "sentinel"),
    [
        ("redis://127.0.0.1:6379/5", 1, "redis://127.0.0.1:6379/15"),
        ("redis://127.0.0.1:6379", 1, "redis://127.0.0.1:6379/15"),
        ("redis://:secret@10.0.0.1:6380/15", 1, "redis://:secret@10.0.0.1:6380/11"),
        ("redis://127.0.0.1:6379/14", 1, "redis://127.0.0.1:6379/15"),
        ("redis://127.0.0.1:6379/14", 2, "redis://127.0.0.1:6379/11"),
        # Three xdist workers take the configured database and the two after it.
        ("redis://127.0.0.1:6379/12", 3, "redis://127.0.0.1:6379/15"),
        ("redis://127.0.0.1:6379/13", 3, "redis://127.0.0.1:6379/11"),
        ("redis://127.0.0.1:6379/9", 7, "redis://127.0.0.1:6379/8"),
    ],
)
def test_the_sentinel_lives_in_another_database_of_the_same_server(
    configured: str, databases: int, sentinel: str
) -> None:
    assert sentinel_url(configured, databases) == sentinel


def test_each_xdist_worker_has_its_own_databases() -> None:
    pg, rd = "postgresql+psycopg://postgres@127.0.0.1:5432/test", "redis://127.0.0.1:6379/3"
    assert for_worker(pg, rd, 0) == (pg, rd)
    assert for_worker(pg, rd, 1) == (
        "postgresql+psycopg://postgres@127.0.0.1:5432/test_gw1",
        "redis://127.0.0.1:6379/4",
    )
