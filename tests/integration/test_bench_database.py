"""Benchmarks start from their own database, which a fresh machine does not have yet; the read
benchmark's seeding writes rows as the engine would."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import inspect, text

from bench.api_reads_data import sample_runs, seed
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


@pytest.fixture
def bench_database() -> Iterator[str]:
    with scratch_postgres("bench_seed") as url:
        yield url


def test_seeded_rows_have_time_ordered_ids_and_reference_rows_that_exist(
    bench_database: str,
) -> None:
    """Ids as new_id() makes them (version 7, the creation time's milliseconds first), and
    every reference whole: the seeding does not check its foreign keys row by row."""
    db_engine = create_db_engine(bench_database)
    try:
        seed(db_engine, runs=300, automations=3, contacts=30)
        with db_engine.connect() as conn:
            runs = conn.execute(text("SELECT id, created_at FROM runs ORDER BY created_at")).all()
            for table, column in (("contacts", "created_at"), ("events", "received_at")):
                for row_id, at in conn.execute(text(f"SELECT id, {column} FROM {table}")):
                    assert_made_at(row_id, at)
            dangling = {
                "run contact": "SELECT count(*) FROM runs r LEFT JOIN contacts c "
                "ON c.id = r.contact_id WHERE c.id IS NULL",
                "run event": "SELECT count(*) FROM runs r LEFT JOIN events e ON e.id = r.event_id "
                "WHERE e.id IS NULL OR e.contact_id <> r.contact_id "
                "OR e.received_at <> r.created_at",
                "step run": "SELECT count(*) FROM run_steps s LEFT JOIN runs r "
                "ON r.id = s.run_id WHERE r.id IS NULL",
                "trigger output": "SELECT count(*) FROM run_steps s JOIN runs r ON r.id = s.run_id "
                "WHERE s.step_key = 'start' AND s.output ->> 'event_id' <> r.event_id::text",
            }
            for what, sql in dangling.items():
                assert conn.scalar(text(sql)) == 0, what
            assert conn.scalar(text("SELECT count(*) FROM events")) == len(runs) == 300
            owners = dict(conn.execute(text("SELECT id, automation_id FROM runs")).all())
            contacts = conn.execute(
                text("SELECT id, created_at FROM contacts ORDER BY created_at, id")
            ).all()
        for row_id, at in runs:
            assert_made_at(row_id, at)
        assert [row_id for row_id, _ in runs] == sorted(row_id for row_id, _ in runs)
        # The contacts arrive one after another before the first run, as in a deployment: the
        # contacts list reads them in the order they were stored.
        assert len({at for _, at in contacts}) == len(contacts) == 30
        assert contacts[-1][1] < runs[0][1]

        sampled = sample_runs(db_engine, 50)
        assert 20 <= len(sampled) <= 50
        assert all(owners[uuid.UUID(run_id)] == uuid.UUID(owner) for owner, run_id in sampled)
        assert sample_runs(db_engine, 50) == sampled  # the same runs for the same rows
    finally:
        db_engine.dispose()


def assert_made_at(row_id: uuid.UUID, at: dt.datetime) -> None:
    assert (row_id.version, row_id.variant) == (7, uuid.RFC_4122)
    assert row_id.int >> 80 == int(at.timestamp() * 1000)
