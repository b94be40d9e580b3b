"""Keyset pagination, newest first, over (created_at, id): stable under inserts, index-friendly."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    bindparam,
    delete,
    or_,
    select,
    tuple_,
    union_all,
)
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

    def rows(position: Position | None) -> list[Any]:
        if position is None:
            return list(session.scalars(ordered))
        bound = position.where(created, ident, home)
        return list(session.scalars(ordered.where(bound), position.params))

    cursor = Cursor(created, ident, after, before, home)
    return _page(cursor.read(session, rows, lambda found: not found), limit, ascending)


def paginate_union(
    session: Session,
    query: Callable[[Shape | None], Select[Any]],
    *,
    params: Mapping[str, Any],
    created: Column,
    ident: Column,
    limit: int,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
    home: ColumnElement[bool] | None = None,
) -> Page[Row[Any]]:
    """One page of rows of a union of disjoint branches (union_page_query).

    Each branch reads at most a page from its own index and the pages are merged: filtering
    by several statuses costs the rows returned, however rare the statuses, where one scan
    with `status IN (...)` would read past every row of the other statuses. `query(shape)`:
    the statement for a Position of this shape (None: no cursor), with `params` for values,
    `home`'s included, so that a list builds each shape's statement once. `home` as for
    paginate.
    """
    ascending = before is not None

    def rows(position: Position | None) -> list[Row[Any]]:
        if position is None:
            return list(session.execute(query(None), params).all())
        return list(session.execute(query(position.shape), position.params).all())

    cursor = Cursor(created, ident, after, before, home, params)
    return _page(cursor.read(session, rows, lambda found: not found), limit, ascending)


def union_page_query(
    branches: Sequence[Select[Any]],
    *,
    created: Column,
    ident: Column,
    limit: int | ColumnElement[int],
    ascending: bool,
    bound: ColumnElement[bool] | None,
) -> Select[Any]:
    """The query behind paginate_union, `bound` a Position's condition: up to `limit` + 1
    rows, in the order of the scan: newest first, or oldest first when `ascending`. `limit`
    may be a bound parameter, for a statement built once and run with many limits."""
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

# The bound parameters of a Position's condition.
CURSOR_ID = "cursor_id"
CURSOR_CREATED = "cursor_created"
# A Position's (after, gone): what its condition's text depends on.
Shape = tuple[bool, bool]


@dataclass(frozen=True)
class Position:
    """Where a page starts: strictly older than the cursor's item (`after`) or newer, the
    item found by its row (a subquery of the page's statement) or, once deleted, by the
    creation time it had (`gone`). Its condition has the same text for every cursor of a
    shape (`shape`), its values in `params`: a list may build its statement once per shape."""

    after: bool
    gone: bool
    params: Mapping[str, Any]

    @property
    def shape(self) -> Shape:
        return self.after, self.gone

    def where(
        self, created: Column, ident: Column, home: ColumnElement[bool] | None
    ) -> ColumnElement[bool]:
        return position_condition(created, ident, home, after=self.after, gone=self.gone)


def position_condition(
    created: Column, ident: Column, home: ColumnElement[bool] | None, *, after: bool, gone: bool
) -> ColumnElement[bool]:
    """(created, ident) beyond the cursor's item, with its values as bound parameters."""
    at_id = bindparam(CURSOR_ID, type_=ident.type)
    if gone:
        at: Any = bindparam(CURSOR_CREATED, type_=created.type)
    else:  # not correlated: the page's statement reads the same table
        at = _position(created, ident, home).correlate(None).scalar_subquery()
    key, cursor = tuple_(created, ident), tuple_(at, at_id)
    return key < cursor if after else key > cursor


def _position(created: Column, ident: Column, home: ColumnElement[bool] | None) -> Select[Any]:
    """The creation time of the cursor's row in its table, if the row is at `home`
    (whatever the list's filter or its soft deletion says of it now)."""
    found = select(created).where(ident == bindparam(CURSOR_ID, type_=ident.type))
    return found.where(home) if home is not None else found


@dataclass(frozen=True)
class Cursor:
    """A list's `after` or `before` cursor: the rows older than (after) or newer than (before)
    the item it names, in (created_at, id) order.

    The cursor is a position: an item that left the list since its page was read (deleted, or
    no longer matching its filter) still marks where the next page starts, as Stripe's and
    Resend's cursors do. Only an id the list never held is refused: one its table never held,
    or a row outside the list's `home` (a run of another automation). `params`: the values of
    the bound parameters `home` has, if any; every Position it hands out carries them.
    """

    created: Column
    ident: Column
    after: uuid.UUID | None
    before: uuid.UUID | None
    home: ColumnElement[bool] | None
    params: Mapping[str, Any] = field(default_factory=dict)

    def read(
        self,
        session: Session,
        page: Callable[[Position | None], R],
        empty: Callable[[R], bool],
    ) -> R:
        """`page(position)` read with the cursor's position looked up inside its own
        statement: one round trip (`page(None)` without a cursor). Only an empty page looks
        further (was the cursor's item deleted, is it an item of this list at all?) and, for a
        deleted item, reads again from where it stood."""
        ident = self.after if self.after is not None else self.before
        if ident is None:
            return page(None)
        after = self.after is not None
        params = {**self.params, CURSOR_ID: ident}
        found = page(Position(after, gone=False, params=params))
        if not empty(found):
            return found
        live = _position(self.created, self.ident, self.home)
        if session.execute(live, params).first() is not None:
            return found
        gone = self._gone(session, ident)
        if gone is None:
            name = "after" if after else "before"
            raise InvalidInput(
                f"The `{name}` cursor does not name an item of this list.",
                field=name,
                code="invalid_parameter",
            )
        return page(Position(after, gone=True, params={**params, CURSOR_CREATED: gone}))

    def _gone(self, session: Session, ident: uuid.UUID) -> Any:
        """Where the cursor's item stood before it was deleted (`remember_gone`), if it was."""
        kind = GonePosition.kind
        return session.execute(
            select(GonePosition.created_at).where(
                GonePosition.id == ident,
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
