"""The API's read sessions: on PostgreSQL each statement is its own transaction (no BEGIN and
COMMIT round trips around a request's reads), a statement that would write is refused before
it is sent, and the runtime's other sessions keep their transactions and may write."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from engine import db
from models.tables import Contact


def clock_readings(session: Session) -> tuple[object, object]:
    """now() twice, 10 ms apart: the same inside one transaction, not across two."""
    first = session.execute(text("SELECT now()")).scalar_one()
    time.sleep(0.01)
    return first, session.execute(text("SELECT now()")).scalar_one()


def test_reads_are_a_transaction_each_and_writes_keep_theirs(pooled: Engine) -> None:
    sessions = db.create_session_factory(pooled)
    with db.reads(db.create_read_session_factory(sessions)) as session:
        first, second = clock_readings(session)
        assert first != second
    with db.transaction(sessions) as session:
        first, second = clock_readings(session)
        assert first == second


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TEMPORARY TABLE scratch (n int)",
        "  update contacts SET first_name = 'x' WHERE false",
        "DELETE FROM contacts WHERE false",
        "SET LOCAL statement_timeout = 1",
    ],
)
def test_a_read_session_refuses_a_statement_that_writes(pooled: Engine, statement: str) -> None:
    read_sessions = db.create_read_session_factory(db.create_session_factory(pooled))
    with db.reads(read_sessions) as session, pytest.raises(db.WriteWhileReading) as refused:
        session.execute(text(statement))
    assert statement.strip()[:20] in str(refused.value)


def test_a_read_session_refuses_an_insert_however_it_is_written(pooled: Engine) -> None:
    read_sessions = db.create_read_session_factory(db.create_session_factory(pooled))
    row = {"id": uuid.uuid4(), "email": f"{uuid.uuid4().hex}@example.test"}
    with db.reads(read_sessions) as session, pytest.raises(db.WriteWhileReading):
        session.execute(insert(Contact).values(**row))
    with db.reads(read_sessions) as session:
        assert session.get(Contact, row["id"]) is None


def test_the_check_is_on_the_read_sessions_only(pooled: Engine) -> None:
    """The guard is an event of the read engine alone: the runtime's writes do not pay for it."""
    sessions = db.create_session_factory(pooled)
    db.create_read_session_factory(sessions)
    with db.transaction(sessions) as session:
        session.execute(text("CREATE TEMPORARY TABLE scratch (n int)"))
        session.execute(text("INSERT INTO scratch VALUES (1)"))


def test_sqlite_reads_in_its_transactions(tmp_path: Path) -> None:
    engine = db.create_db_engine(f"sqlite:///{tmp_path}/reads.db")
    try:
        sessions = db.create_session_factory(engine)
        assert db.create_read_session_factory(sessions) is sessions
    finally:
        engine.dispose()
