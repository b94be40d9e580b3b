"""Keyset pagination, newest first, over (created_at, id): stable under inserts, index-friendly."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Row, Select, delete, or_, select, tuple_, union_all
from sqlalchemy.orm import InstrumentedAttribute, Session

from engine.errors import InvalidInput
from engine.store.dialect import insert_ignoring_conflicts
from models.housekeeping import GonePosition

T = TypeVar("T")
# A mapped attribute (Run.created_at) or a table column (RUNS.c.created_at).
Column = ColumnElement[Any] | InstrumentedAttribute[Any]


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


def paginate(
    session: Session,
    stmt: Select[Any],
    *,
    created: Column,
    ident: Column,
    limit: int,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
    home: ColumnElement[bool] | None = None,
) -> Page[Any]:
    """One page of `stmt`'s rows (scalars) strictly after or before the cursor item.

    `home`: what every item the list ever held meets, whatever it is now (a run's automation):
    a cursor outside it names no item of the list.
    """
    bound = _cursor_bound(session, stmt, created, ident, after, before, home)
    if bound is not None:
        stmt = stmt.where(bound)
    ascending = before is not None
    rows = list(session.scalars(stmt.order_by(*_order(created, ident, ascending)).limit(limit + 1)))
    return _page(rows, limit, ascending)


def paginate_union(
    session: Session,
    scope: Select[Any],
    branches: Sequence[Select[Any]],
    *,
    created: Column,
    ident: Column,
    limit: int,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
    home: ColumnElement[bool] | None = None,
) -> Page[Row[Any]]:
    """One page of rows of `scope`, which is the union of the disjoint `branches`.

    Each branch reads at most a page from its own index and the pages are merged: filtering
    by several statuses costs the rows returned, however rare the statuses, where one scan
    with `status IN (...)` would read past every row of the other statuses. `home` as for
    paginate.
    """
    stmt = union_page_query(
        session,
        scope,
        branches,
        created=created,
        ident=ident,
        limit=limit,
        after=after,
        before=before,
        home=home,
    )
    return _page(list(session.execute(stmt).all()), limit, before is not None)


def union_page_query(
    session: Session,
    scope: Select[Any],
    branches: Sequence[Select[Any]],
    *,
    created: Column,
    ident: Column,
    limit: int,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
    home: ColumnElement[bool] | None = None,
) -> Select[Any]:
    """The query behind paginate_union (the cursor is looked up first): up to `limit` + 1
    rows, in the order of the scan: newest first, or oldest first with `before`."""
    bound = _cursor_bound(session, scope, created, ident, after, before, home)
    ascending = before is not None
    parts = [
        (branch.where(bound) if bound is not None else branch)
        .order_by(*_order(created, ident, ascending))
        .limit(limit + 1)
        for branch in branches
    ]
    if len(parts) == 1:
        return parts[0]
    # Each branch wrapped as a subquery: SQLite refuses ORDER BY/LIMIT on a bare branch.
    merged = union_all(*(select(part.subquery()) for part in parts)).subquery()
    order = _order(merged.c[_name(created)], merged.c[_name(ident)], ascending)
    return select(merged).order_by(*order).limit(limit + 1)


def _cursor_bound(
    session: Session,
    stmt: Select[Any],
    created: Column,
    ident: Column,
    after: uuid.UUID | None,
    before: uuid.UUID | None,
    home: ColumnElement[bool] | None,
) -> ColumnElement[bool] | None:
    """The keyset condition for rows after (older than) or before (newer than) the cursor.

    The cursor is a position, (created_at, id): an item that left the list since its page was
    read (deleted, or no longer matching its filter) still marks where the next page starts,
    as Stripe's and Resend's cursors do. Only an id the list never held is refused: one its
    table never held, or a row outside the list's `home` (a run of another automation).
    """
    if after is None and before is None:
        return None
    cursor_id = after if after is not None else before
    assert cursor_id is not None
    lookup = stmt.with_only_columns(created, ident).where(ident == cursor_id)
    cursor = session.execute(lookup).first() or _position(session, created, ident, cursor_id, home)
    if cursor is None:
        name = "after" if after is not None else "before"
        raise InvalidInput(
            f"The `{name}` cursor does not name an item of this list.",
            field=name,
            code="invalid_parameter",
        )
    key, bound = tuple_(created, ident), tuple_(cursor[0], cursor[1])
    return key < bound if after is not None else key > bound


def _position(
    session: Session,
    created: Column,
    ident: Column,
    cursor_id: uuid.UUID,
    home: ColumnElement[bool] | None,
) -> tuple[Any, Any] | None:
    """Where the cursor's row is in its table, whatever the list's filter (or its soft
    deletion) says of it now, if it is at `home`; or where it was, deleted (`remember_gone`)."""
    found = select(created, ident).where(ident == cursor_id)
    row = session.execute(found.where(home) if home is not None else found).first()
    if row is None:
        kind = GonePosition.kind
        row = session.execute(
            select(GonePosition.created_at, GonePosition.id).where(
                GonePosition.id == cursor_id,
                or_(kind == _table_name(ident), kind.is_(None)),
            )
        ).first()
    return (row[0], row[1]) if row is not None else None


def _table_name(column: Column) -> str:
    table = getattr(column, "table", None)
    assert table is not None, "pagination columns are columns of a table"
    return str(table.name)


# How long a deleted item's position is kept for the cursors that name it: paging a list
# through takes minutes, not days.
GONE_KEPT = dt.timedelta(days=7)


def remember_gone(
    session: Session,
    kind: str,
    positions: Iterable[tuple[uuid.UUID, dt.datetime]],
    now: dt.datetime,
) -> None:
    """Keep where these items (id, created_at), deleted from the table `kind`, stood in its
    lists."""
    rows = [
        {"id": ident, "created_at": created, "gone_at": now, "kind": kind}
        for ident, created in positions
    ]
    if rows:
        session.execute(
            insert_ignoring_conflicts(session, GonePosition.__table__, rows)  # type: ignore[arg-type]
        )


def forget_gone(session: Session, now: dt.datetime, *, limit: int = 1000) -> int:
    """Forget up to `limit` positions kept longer than GONE_KEPT, oldest first."""
    old = (
        select(GonePosition.id)
        .where(GonePosition.gone_at < now - GONE_KEPT)
        .order_by(GonePosition.gone_at)
        .limit(limit)
    )
    result = session.execute(
        delete(GonePosition)
        .where(GonePosition.id.in_(old.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


def _order(created: Column, ident: Column, ascending: bool) -> tuple[Column, ...]:
    return (created, ident) if ascending else (created.desc(), ident.desc())


def _name(column: Column) -> str:
    name = getattr(column, "key", None)
    assert isinstance(name, str), "pagination columns are named columns"
    return name


def _page(rows: list[Any], limit: int, ascending: bool) -> Page[Any]:
    """Rows fetched one beyond the limit, so that `has_more` needs no count; newest first."""
    has_more = len(rows) > limit
    items = rows[:limit]
    return Page(list(reversed(items)) if ascending else items, has_more)
