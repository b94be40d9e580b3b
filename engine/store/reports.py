"""Reads behind the API's lists and details of automations and runs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    bindparam,
    exists,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from engine.store.core import RUNS
from engine.store.paging import (
    Cursor,
    Page,
    Position,
    Shape,
    paginate,
    paginate_union,
    position_condition,
    union_page_query,
)
from models.tables import Automation, Event, Run, RunStep


def automation_page(
    session: Session,
    *,
    status: str | None,
    limit: int,
    after: uuid.UUID | None,
    before: uuid.UUID | None,
) -> Page[Automation]:
    """Automations not deleted, newest first, optionally of one status."""
    stmt = select(Automation).where(Automation.deleted_at.is_(None))
    if status is not None:
        stmt = stmt.where(Automation.status == status)
    return paginate(
        session,
        stmt,
        created=Automation.created_at,
        ident=Automation.id,
        limit=limit,
        after=after,
        before=before,
    )


@dataclass(frozen=True)
class RunSummary:
    """A run as lists show it: a plain row, no ORM object per item of a long page."""

    id: uuid.UUID
    automation_id: uuid.UUID
    contact_id: uuid.UUID | None
    status: str
    started_at: dt.datetime
    completed_at: dt.datetime | None
    created_at: dt.datetime


_SUMMARY = select(
    RUNS.c.id,
    RUNS.c.automation_id,
    RUNS.c.contact_id,
    RUNS.c.status,
    RUNS.c.started_at,
    RUNS.c.completed_at,
    RUNS.c.created_at,
)


def run_page(
    session: Session,
    automation_id: uuid.UUID,
    *,
    statuses: Collection[str] | None,
    limit: int,
    after: uuid.UUID | None,
    before: uuid.UUID | None,
) -> Page[RunSummary]:
    """An automation's runs, newest first, optionally of some statuses.

    With several statuses, one index scan per status (automation, status, created_at, id),
    merged: each reads only its page, however rare the status.
    """
    count, ascending = _count(statuses), before is not None
    page = paginate_union(
        session,
        lambda shape: _run_rows(count, ascending, shape),
        params=_run_params(automation_id, statuses, limit),
        created=RUNS.c.created_at,
        ident=RUNS.c.id,
        limit=limit,
        after=after,
        before=before,
        home=_RUN_HOME,
    )
    return Page([RunSummary(*tuple(row)) for row in page.items], page.has_more)


# A runs page's statement is built once per shape (how many statuses, which way, what kind of
# cursor), its values bound at each request: building it anew (its subqueries' columns) took
# longer than PostgreSQL takes to run it.
_AUTOMATION = "automation_id"
_LIMIT = bindparam("limit", type_=Integer)
_RUN_HOME = RUNS.c.automation_id == bindparam(_AUTOMATION)


def _count(statuses: Collection[str] | None) -> int | None:
    return None if statuses is None else len(statuses)


def _run_params(
    automation_id: uuid.UUID, statuses: Collection[str] | None, limit: int
) -> dict[str, Any]:
    """The values of a runs page's parameters (`_run_scans`' statuses in the same order)."""
    named = {f"status_{index}": status for index, status in enumerate(sorted(statuses or ()))}
    return {_AUTOMATION: automation_id, "limit": limit, **named}


def _run_scans(count: int | None) -> list[Select[Any]]:
    """The disjoint scans (one per status, `count` of them; one for all statuses if None) that
    read the runs asked for, none unless the automation exists (not deleted): PostgreSQL
    checks it once, before the scans."""
    live = exists().where(Automation.id == bindparam(_AUTOMATION), Automation.deleted_at.is_(None))
    scope = _SUMMARY.where(_RUN_HOME, live)
    if count is None:
        return [scope]
    return [scope.where(RUNS.c.status == bindparam(f"status_{index}")) for index in range(count)]


@cache
def _run_rows(count: int | None, ascending: bool, shape: Shape | None) -> Select[Any]:
    """Up to `limit` + 1 runs, in the scan's order (oldest first when `ascending`)."""
    bound = None
    if shape is not None:
        after, gone = shape
        bound = position_condition(RUNS.c.created_at, RUNS.c.id, _RUN_HOME, after=after, gone=gone)
    return union_page_query(
        _run_scans(count),
        created=RUNS.c.created_at,
        ident=RUNS.c.id,
        limit=_LIMIT,
        ascending=ascending,
        bound=bound,
    )


@cache
def _run_json(count: int | None, ascending: bool, shape: Shape | None) -> Select[Any]:
    """`_run_rows`' page as the API's JSON items in one text value, and how many rows it
    read (one beyond the page: there are more)."""
    page = _run_rows(count, ascending, shape).subquery()
    # The row beyond the page (it says there are more) is the last one in the scan's order.
    scan = (page.c.created_at, page.c.id) if ascending else _newest_first(page.c)
    numbered = select(page, func.row_number().over(order_by=scan).label("n")).subquery("paged")
    order: ColumnElement[Any] = aggregate_order_by(
        literal_column("','"), *_newest_first(numbered.c)
    )
    return select(
        func.string_agg(literal_column(_RUN_ITEM), order).filter(numbered.c.n <= _LIMIT),
        func.count(),
    ).select_from(numbered)


@dataclass(frozen=True)
class JsonPage:
    """A page whose items the database wrote as JSON: `items` is their text, comma-separated."""

    items: str
    has_more: bool


def run_page_json(
    session: Session,
    automation_id: uuid.UUID,
    *,
    statuses: Collection[str] | None,
    limit: int,
    after: uuid.UUID | None,
    before: uuid.UUID | None,
) -> JsonPage | None:
    """run_page's runs as the API's JSON items, written by PostgreSQL in one text value, so a
    page of a thousand runs costs no Python object per run; None on other databases."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    count, ascending = _count(statuses), before is not None
    params = _run_params(automation_id, statuses, limit)

    def written(position: Position | None) -> JsonPage:
        stmt = _run_json(count, ascending, None if position is None else position.shape)
        items, rows = session.execute(stmt, params if position is None else position.params).one()
        return JsonPage(items or "", rows > limit)

    cursor = Cursor(RUNS.c.created_at, RUNS.c.id, after, before, _RUN_HOME, params)
    return cursor.read(session, written, lambda page: not page.items)


def _newest_first(columns: Any) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    return columns.created_at.desc(), columns.id.desc()


def _json_time(column: str) -> str:
    """api/wire.py's wire_time as a JSON string (`"2026-10-01 12:00:00.000000+00"`), or null."""
    wire = f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    return f"""coalesce('"' || {wire} || '+00"', 'null')"""


# A run as api/serialize_automations.run_item's JSON, byte for byte as the API encodes it (no
# spaces, keys in that order), from the columns of the subquery `paged`. One constant: the
# statement around it is built per request, this part is not.
_RUN_ITEM = f"""'{{"id":"' || paged.id::text
    || '","status":' || to_json(paged.status)::text
    || ',"started_at":' || {_json_time("paged.started_at")}
    || ',"completed_at":' || {_json_time("paged.completed_at")}
    || ',"created_at":' || {_json_time("paged.created_at")}
    || '}}'"""


def run_with_event(
    session: Session, automation_id: uuid.UUID, run_id: uuid.UUID
) -> tuple[Run, Event | None] | None:
    """The run of this automation, not deleted, and the event that started it (None once that
    event is deleted): None if there is no such run, or no such automation."""
    stmt = (
        select(Run, Event)
        .join(Automation, Automation.id == Run.automation_id)
        .outerjoin(Event, Event.id == Run.event_id)
        .where(
            Run.id == run_id,
            Run.automation_id == automation_id,
            Automation.deleted_at.is_(None),
        )
    )
    row = session.execute(stmt).first()
    return None if row is None else (row[0], row[1])


def run_steps(session: Session, run_id: uuid.UUID) -> list[RunStep]:
    """Every step row of the run, oldest first."""
    stmt = select(RunStep).where(RunStep.run_id == run_id)
    return list(session.scalars(stmt.order_by(RunStep.created_at, RunStep.step_key)))
