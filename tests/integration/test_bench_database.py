"""Benchmarks start from their own database, which a fresh machine does not have yet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import inspect

from bench.procs import fresh_schema
from engine.db import create_db_engine
from tests.conftest import scratch_postgres


@pytest.fixture
def missing_database() -> Iterator[str]:
    """The URL of a database that does not exist; dropped again afterwards."""
    with scratch_postgres("bench_fresh", create=False) as url:
        yield url


def test_fresh_schema_creates_the_database_it_is_given(missing_database: str) -> None:
    db_engine = create_db_engine(missing_database)
    try:
        fresh_schema(db_engine)
        fresh_schema(db_engine)  # again: the tables dropped and made anew, the database kept
        assert {"runs", "run_steps", "events"} <= set(inspect(db_engine).get_table_names())
    finally:
        db_engine.dispose()
