"""The cursor of engine/pg_cursor.py describes every kind of result as psycopg's own does, and
SQLAlchemy gets its rows and types through it unchanged."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from engine.pg_cursor import LazyDescriptionCursor
from tests.conftest import POSTGRES_URL, require_url

RESULTS = [
    "SELECT 1 AS n, 'x'::text AS t, '2026-12-04 10:00+00'::timestamptz AS at,"
    " '{\"a\": 1}'::jsonb AS j, NULL AS nothing",
    "SELECT 1.5::numeric(10, 2) AS money, 'ab'::varchar(12) AS short, ARRAY[1, 2] AS ints",
    "SELECT gen_random_uuid() AS id WHERE false",  # columns, no rows
    "SELECT",  # rows of no columns: psycopg describes it as []
    'SELECT 1 AS "ünïcode", 2',  # a name to decode, and an unnamed column
    "CREATE TEMPORARY TABLE described (id int)",  # no result: None
    "INSERT INTO described VALUES (1), (2)",
    "UPDATE described SET id = id + 1 RETURNING id, id * 2 AS twice",
]


def plain(column: psycopg.Column) -> tuple[Any, ...]:
    return (*column, column.type_display)


def described(cursor: psycopg.Cursor[Any]) -> list[tuple[Any, ...]] | None:
    description = cursor.description
    return None if description is None else [plain(column) for column in description]


@pytest.fixture
def connections() -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any]]]:
    require_url("PostgreSQL", POSTGRES_URL)
    dsn = POSTGRES_URL.replace("+psycopg", "")
    with (
        psycopg.connect(dsn) as ours,
        psycopg.connect(dsn) as theirs,
    ):
        ours.cursor_factory = LazyDescriptionCursor
        yield ours, theirs


@pytest.mark.parametrize("statement", RESULTS)
def test_each_result_is_described_as_psycopg_describes_it(connections: Any, statement: str) -> None:
    ours, theirs = connections
    if statement.startswith(("INSERT", "UPDATE")):
        for connection in connections:
            connection.execute(RESULTS[5])
    with ours.cursor() as lazy, theirs.cursor() as eager:
        assert isinstance(lazy, LazyDescriptionCursor)
        lazy.execute(statement)
        eager.execute(statement)
        assert (lazy.description is None) == (eager.description is None)
        assert described(lazy) == described(eager)
        if eager.description is not None:
            assert len(lazy.description or ()) == len(eager.description)
            assert [plain(c) for c in (lazy.description or [])[-1:]] == [
                plain(c) for c in eager.description[-1:]
            ]
            assert lazy.fetchall() == eager.fetchall()


def test_a_description_kept_past_the_next_statement_still_describes_its_own_result(
    connections: Any,
) -> None:
    ours, theirs = connections
    with ours.cursor() as lazy, theirs.cursor() as eager:
        lazy.execute(RESULTS[0])
        kept = lazy.description
        lazy.execute(RESULTS[1])
        eager.execute(RESULTS[0])
        assert kept is not None
        assert [plain(column) for column in kept] == described(eager)


def test_the_runtimes_engine_uses_it_and_sqlalchemy_reads_results_through_it(
    pooled: Engine,
) -> None:
    key = uuid.uuid4()
    with pooled.connect() as conn:
        assert isinstance(conn.connection.driver_connection.cursor(), LazyDescriptionCursor)  # type: ignore[union-attr]
        row = conn.execute(
            text("SELECT CAST(:key AS uuid) AS key, now() AS at, 7 AS n"), {"key": key}
        ).one()
        assert list(row._mapping) == ["key", "at", "n"]
        assert row.key == key and row.n == 7 and isinstance(row.at, dt.datetime)
        assert conn.execute(text("SELECT 1 WHERE false")).all() == []
        assert conn.execute(text("CREATE TEMPORARY TABLE t (n int)")).rowcount == -1
