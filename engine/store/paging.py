"""Keyset pagination, newest first, over (created_at, id): stable under inserts, index-friendly."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Row, Select, delete, literal, or_, select, tuple_, union_all
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
    ascending = before is not None
    ordered = stmt.order_by(*_order(created, ident, ascending)).limit(limit + 1)

    def rows(bound: ColumnElement[bool] | None) -> list[Any]:
        return list(session.scalars(ordered.where(bound) if bound is not None else ordered))

    cursor = Cursor(created, ident, after, before, home)
    return _page(cursor.read(session, rows, lambda found: not found), limit, ascending)


def paginate_union(
    session: Session,
    branches: Sequence[Select[Any]],
    *,
    created: Column,
    ident: Column,
    limit: int,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
    home: ColumnElement[bool] | None = None,
) -> Page[Row[Any]]:
    """One page of rows of the union of the disjoint `branches`.

    Each branch reads at most a page from its own index and the pages are merged: filtering
    by several statuses costs the rows returned, however rare the statuses, where one scan
    with `status IN (...)` would read past every row of the other statuses. `home` as for
    paginate.
    """
    ascending = before is not None

    def rows(bound: ColumnElement[bool] | None) -> list[Row[Any]]:
        query = union_page_query(
            branches, created=created, ident=ident, limit=limit, ascending=ascending, bound=bound
        )
        return list(session.execute(query).all())

    cursor = Cursor(created, ident, after, before, home)
    return _page(cursor.read(session, rows, lambda found: not found), limit, ascending)


def union_page_query(
    branches: Sequence[Select[Any]],
    *,
    created: Column,
    ident: Column,
    limit: int,
    ascending: bool,
    bound: ColumnElement[bool] | None,
) -> Select[Any]:
    """The query behind paginate_union, `bound` a Cursor's condition: up to `limit` + 1 rows,
    in the order of the scan: newest first, or oldest first when `ascending`."""
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


R = TypeVar("R")


@dataclass(frozen=True)
class Cursor:
    """A list's `after` or `before` cursor: the rows older than (after) or newer than (before)
    the item it names, in (created_at, id) order.

    The cursor is a position: an item that left the list since its page was read (deleted, or
    no longer matching its filter) still marks where the next page starts, as Stripe's and
    Resend's cursors do. Only an id the list never held is refused: one its table never held,
    or a row outside the list's `home` (a run of another automation).
    """

    created: Column
    ident: Column
    after: uuid.UUID | None
    before: uuid.UUID | None
    home: ColumnElement[bool] | None

    def read(
        self,
        session: Session,
        page: Callable[[ColumnElement[bool] | None], R],
        empty: Callable[[R], bool],
    ) -> R:
        """`page(bound)` read with the cursor's position looked up inside its own statement:
        one round trip. Only an empty page looks further (was the cursor's item deleted, is
        it an item of this list at all?) and, for a deleted item, reads again from where it
        stood."""
        found = page(self._bound(self._live().correlate(None).scalar_subquery()))
        if self.id is None or not empty(found):
            return found
        if session.execute(self._live()).first() is not None:
            return found
        gone = self._gone(session)
        if gone is None:
            name = "after" if self.after is not None else "before"
            raise InvalidInput(
                f"The `{name}` cursor does not name an item of this list.",
                field=name,
                code="invalid_parameter",
            )
        return page(self._bound(gone))

    @property
    def id(self) -> uuid.UUID | None:
        return self.after if self.after is not None else self.before

    def _bound(self, created_at: Any) -> ColumnElement[bool] | None:
        if self.id is None:
            return None
        key = tuple_(self.created, self.ident)
        at = tuple_(created_at, literal(self.id, type_=self.ident.type))
        return key < at if self.after is not None else key > at

    def _live(self) -> Select[Any]:
        """The creation time of the cursor's row in its table, if the row is at `home`
        (whatever the list's filter or its soft deletion says of it now). Inside the page's
        statement it is not correlated: that statement reads the same table."""
        found = select(self.created).where(self.ident == self.id)
        return found.where(self.home) if self.home is not None else found

    def _gone(self, session: Session) -> Any:
        """Where the cursor's item stood before it was deleted (`remember_gone`), if it was."""
        kind = GonePosition.kind
        return session.execute(
            select(GonePosition.created_at).where(
                GonePosition.id == self.id,
                or_(kind == _table_name(self.ident), kind.is_(None)),
            )
        ).scalar()


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
