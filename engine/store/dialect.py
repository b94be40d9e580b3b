"""The few statements whose spelling differs between PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Insert, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflicts(
    session: Session, table: Table, rows: Sequence[dict[str, Any]] | dict[str, Any]
) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING for the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).values(rows).on_conflict_do_nothing()
    return sqlite.insert(table).values(rows).on_conflict_do_nothing()


def insert_or_ignore(session: Session, table: Table, *returning: str) -> Insert:
    """`insert_ignoring_conflicts` built once per dialect, table and RETURNING list; the
    values come as execution parameters."""
    return _insert_or_ignore(session.get_bind().dialect.name, table, returning)


@cache
def _insert_or_ignore(dialect: str, table: Table, returning: tuple[str, ...]) -> Insert:
    stmt: Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    return stmt.returning(*(table.c[name] for name in returning)) if returning else stmt


def insert_or_update(
    session: Session, table: Table, row: dict[str, Any], *, index: str, update: dict[str, Any]
) -> Insert:
    """INSERT ... ON CONFLICT (index) DO UPDATE SET `update`, for the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        upsert = postgresql.insert(table).values(row)
        return upsert.on_conflict_do_update(index_elements=[index], set_=update)
    lite = sqlite.insert(table).values(row)
    return lite.on_conflict_do_update(index_elements=[index], set_=update)
