"""A simulation's SQL: rows copied out of the real database, and reads of its throwaway store."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, text
from sqlalchemy.orm import Session

from engine.store.core import STEPS, execute
from models.enums import STEP_CLAIMABLE


def read_only(session: Session) -> None:
    """Make the session's transaction refuse every write (PostgreSQL; SQLite has no such mode).

    Must come first in the transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET TRANSACTION READ ONLY"))


def rows_where(
    session: Session, table: Table, column: str, values: Collection[Any]
) -> list[dict[str, Any]]:
    """The rows whose `column` is one of `values`, as column -> value."""
    if not values:
        return []
    stmt = select(table).where(table.c[column].in_(sorted(values, key=str)))
    return [dict(row._mapping) for row in execute(session, stmt)]


def all_rows(session: Session, table: Table) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in execute(session, select(table))]


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        execute(session, insert(table), list(rows))


_PARKED = (
    select(STEPS.c.step_key, STEPS.c.step_type, STEPS.c.due_at)
    .where(
        STEPS.c.run_id == bindparam("run_id"),
        STEPS.c.status.in_(sorted(STEP_CLAIMABLE)),
        STEPS.c.due_at.is_not(None),
    )
    .order_by(STEPS.c.due_at, STEPS.c.created_at, STEPS.c.step_key)
)


def next_due(
    session: Session, run_id: uuid.UUID
) -> tuple[dt.datetime | None, list[tuple[str, str]]]:
    """The earliest due time among the run's steps that wait for one, and those steps as
    (key, type); (None, []) when no step of the run waits for a time."""
    rows = execute(session, _PARKED, {"run_id": run_id}).all()
    if not rows:
        return None, []
    earliest: dt.datetime = rows[0].due_at
    return earliest, [(row.step_key, row.step_type) for row in rows if row.due_at == earliest]
