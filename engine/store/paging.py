"""Keyset pagination, newest first, over (created_at, id): stable under inserts, index-friendly."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from engine.errors import InvalidInput

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


def paginate(
    session: Session,
    stmt: Select[Any],
    *,
    created: InstrumentedAttribute[Any],
    ident: InstrumentedAttribute[Any],
    limit: int,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
) -> Page[Any]:
    """One page of `stmt`'s rows (scalars) strictly after or before the cursor item."""
    key = tuple_(created, ident)
    if after is not None or before is not None:
        cursor_id = after if after is not None else before
        cursor = session.execute(
            stmt.with_only_columns(created, ident).where(ident == cursor_id)
        ).first()
        if cursor is None:
            name = "after" if after is not None else "before"
            raise InvalidInput(
                f"The `{name}` cursor does not name an item of this list.",
                field=name,
                code="invalid_parameter",
            )
        bound = tuple_(cursor[0], cursor[1])
        stmt = stmt.where(key < bound) if after is not None else stmt.where(key > bound)
    if before is not None:
        rows = list(session.scalars(stmt.order_by(created, ident).limit(limit + 1)))
        has_more = len(rows) > limit
        return Page(list(reversed(rows[:limit])), has_more)
    rows = list(session.scalars(stmt.order_by(created.desc(), ident.desc()).limit(limit + 1)))
    return Page(rows[:limit], len(rows) > limit)
