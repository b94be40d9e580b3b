"""The pool tests a connection that sat idle before handing it out, and only such a one; and
psycopg keeps the conversion of our longest statements."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from engine import db
from tests.conftest import POSTGRES_URL


def backend(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(pid: int) -> None:
    """What a database restart does to a session."""
    killer = create_engine(POSTGRES_URL, poolclass=NullPool)
    try:
        with killer.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        killer.dispose()


def test_a_connection_idle_past_the_threshold_is_tested_and_replaced(
    pooled: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = backend(pooled)
    terminate(first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)  # any idle time is long enough
    assert backend(pooled) != first  # the dead connection was found out, not handed out


def test_a_connection_back_in_use_at_once_is_not_tested(
    pooled: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The trade-off, shown: a connection used a moment ago is handed out untested (no round
    # trip); if the database dropped it meanwhile, that one transaction fails, and the pool
    # then replaces every connection opened before it.
    first = backend(pooled)
    terminate(first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 3600.0)
    with pytest.raises(DBAPIError) as failed:
        backend(pooled)
    assert failed.value.connection_invalidated
    assert backend(pooled) != first


def test_a_statement_longer_than_psycopgs_default_bound_is_converted_once(pooled: Engine) -> None:
    # The ingestion's store statement is over psycopg's 4 KB; engine/db.py raises the bound.
    from psycopg import _queries

    padding = " " * 5000
    statement = f"SELECT %(n)s::int AS n{padding}"
    with pooled.connect() as conn:
        conn.exec_driver_sql(statement, {"n": 1}).all()
        before = _queries._query2pg.cache_info()
        assert conn.exec_driver_sql(statement, {"n": 2}).scalar_one() == 2
        after = _queries._query2pg.cache_info()
    assert len(statement) > 4096
    assert after.hits == before.hits + 1, "psycopg converted the long statement again"


def test_an_embedded_sqlite_commit_is_on_disk_when_it_returns(tmp_path: Path) -> None:
    """WAL with synchronous=FULL (2): NORMAL (1) could lose the last commits to a power cut."""
    sqlite = db.create_db_engine(f"sqlite:///{tmp_path / 'automations.sqlite3'}")
    try:
        with sqlite.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2
    finally:
        sqlite.dispose()


def test_a_failed_statement_does_not_repeat_its_parameters(pooled: Engine) -> None:
    """A statement's error reaches logs, Celery's task events (Flower) and tracebacks: the
    values it carried (an address, a payload, an email's text) are not in it; the SQL is."""
    with pooled.connect() as conn, pytest.raises(DBAPIError) as failed:
        conn.execute(text("SELECT CAST(:who AS text), 1 / 0"), {"who": "ann@example.test"})
    assert "ann@example.test" not in str(failed.value)
    assert "division by zero" in str(failed.value) and "SELECT CAST" in str(failed.value)
