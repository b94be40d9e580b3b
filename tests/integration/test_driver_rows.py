"""`store.core.driver_rows` gives the rows `exec_driver_sql` gives, and keeps what the store
relies on from SQLAlchemy: the cursor events, its exceptions, a lost connection invalidated."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from engine import db
from engine.store.core import driver_rows
from tests.integration.test_db_pool import backend, terminate

ROWS = (
    "SELECT n, n::text AS t, CAST(%(key)s AS uuid) AS key, '{\"a\": [1]}'::jsonb AS j,"
    " now() AS at, NULL AS nothing FROM generate_series(1, %(many)s) AS n"
)


def test_the_rows_are_those_exec_driver_sql_gives(pooled: Engine) -> None:
    params = {"key": uuid.uuid4(), "many": 3}
    with Session(pooled) as session, session.begin():
        theirs = [tuple(row) for row in session.connection().exec_driver_sql(ROWS, params)]
        ours = driver_rows(session, ROWS, params)
        assert ours == theirs
        assert driver_rows(session, ROWS, {**params, "many": 0}) == []


def test_it_runs_in_the_sessions_transaction(pooled: Engine) -> None:
    with Session(pooled) as session, session.begin():
        session.connection().exec_driver_sql("CREATE TEMPORARY TABLE seen (n int)")
        inserted = driver_rows(session, "INSERT INTO seen VALUES (1), (2) RETURNING n", {})
        assert inserted == [(1,), (2,)]
        assert session.connection().exec_driver_sql("SELECT count(*) FROM seen").scalar() == 2
        session.rollback()


def test_the_cursor_events_see_the_statement(pooled: Engine) -> None:
    seen: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append(("before", statement))

    def after(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append(("after", statement))

    event.listen(pooled, "before_cursor_execute", before)
    event.listen(pooled, "after_cursor_execute", after)
    try:
        with Session(pooled) as session, session.begin():
            driver_rows(session, "SELECT %(n)s::int", {"n": 1})
    finally:
        event.remove(pooled, "before_cursor_execute", before)
        event.remove(pooled, "after_cursor_execute", after)
    assert seen == [("before", "SELECT %(n)s::int"), ("after", "SELECT %(n)s::int")]


def test_a_driver_error_comes_out_as_sqlalchemys(pooled: Engine) -> None:
    with Session(pooled) as session, session.begin():
        session.connection().exec_driver_sql("CREATE TEMPORARY TABLE once (n int PRIMARY KEY)")
        driver_rows(session, "INSERT INTO once VALUES (1) RETURNING n", {})
        with pytest.raises(IntegrityError, match="duplicate key"):
            driver_rows(session, "INSERT INTO once VALUES (1) RETURNING n", {})
        session.rollback()


def test_a_lost_connection_is_invalidated_as_for_any_statement(
    pooled: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What engine/db.py's retry_on_disconnect reads to run the operation once more.
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 3600.0)  # handed out untested: the statement fails
    first = backend(pooled)
    terminate(first)
    with pytest.raises(DBAPIError) as failed, Session(pooled) as session, session.begin():
        driver_rows(session, "SELECT 1", {})
    assert failed.value.connection_invalidated
    assert backend(pooled) != first
