"""Reads behind the API's lists and details of automations and runs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from engine.store.core import RUNS
from engine.store.paging import Cursor, Page, paginate, paginate_union, union_page_query
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
    page = paginate_union(
        session,
        _run_scans(automation_id, statuses),
        created=RUNS.c.created_at,
        ident=RUNS.c.id,
        limit=limit,
        after=after,
        before=before,
        home=RUNS.c.automation_id == automation_id,
    )
    return Page([RunSummary(*tuple(row)) for row in page.items], page.has_more)


def _run_scans(automation_id: uuid.UUID, statuses: Collection[str] | None) -> list[Select[Any]]:
    """The disjoint scans (one per status) that read the runs asked for, none unless the
    automation exists (not deleted): PostgreSQL checks it once, before the scans."""
    live = exists().where(Automation.id == automation_id, Automation.deleted_at.is_(None))
    scope = _SUMMARY.where(RUNS.c.automation_id == automation_id, live)
    if statuses is None:
        return [scope]
    return [scope.where(RUNS.c.status == status) for status in sorted(statuses)]


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
    branches = _run_scans(automation_id, statuses)
    ascending = before is not None

    def written(bound: ColumnElement[bool] | None) -> JsonPage:
        page = union_page_query(
            branches,
            created=RUNS.c.created_at,
            ident=RUNS.c.id,
            limit=limit,
            ascending=ascending,
            bound=bound,
        ).subquery()
        # The row beyond the page (it says there are more) is the last one in the scan's order.
        scan = (page.c.created_at, page.c.id) if ascending else _newest_first(page.c)
        numbered = select(page, func.row_number().over(order_by=scan).label("n")).subquery("paged")
        order: ColumnElement[Any] = aggregate_order_by(
            literal_column("','"), *_newest_first(numbered.c)
        )
        stmt = select(
            func.string_agg(literal_column(_RUN_ITEM), order).filter(numbered.c.n <= limit),
            func.count(),
        ).select_from(numbered)
        items, rows = session.execute(stmt).one()
        return JsonPage(items or "", rows > limit)

    cursor = Cursor(
        RUNS.c.created_at, RUNS.c.id, after, before, RUNS.c.automation_id == automation_id
    )
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
