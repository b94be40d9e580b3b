"""Benchmarks start from their own database, which a fresh machine does not have yet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from bench.procs import fresh_schema
from engine.db import create_db_engine
from tests.conftest import POSTGRES_URL, require_url


@pytest.fixture
def missing_database() -> Iterator[str]:
    """The URL of a database that does not exist; dropped again afterwards."""
    require_url("PostgreSQL", POSTGRES_URL)
    base = make_url(POSTGRES_URL)
    name = f"{base.database}_bench_fresh"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    drop = text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    try:
        with admin.connect() as conn:
            conn.execute(drop)
        yield base.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(drop)
    finally:
        admin.dispose()


def test_fresh_schema_creates_the_database_it_is_given(missing_database: str) -> None:
    db_engine = create_db_engine(missing_database)
    try:
        fresh_schema(db_engine)
        fresh_schema(db_engine)  # again: the tables dropped and made anew, the database kept
        assert {"runs", "run_steps", "events"} <= set(inspect(db_engine).get_table_names())
    finally:
        db_engine.dispose()
