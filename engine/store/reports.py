"""Reads behind the API's lists and details of automations and runs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.store.core import RUNS
from engine.store.paging import Page, paginate, paginate_union
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
    scope = _SUMMARY.where(RUNS.c.automation_id == automation_id)
    branches = [scope]
    if statuses is not None:
        wanted = sorted(statuses)
        branches = [scope.where(RUNS.c.status == status) for status in wanted]
        scope = scope.where(RUNS.c.status.in_(wanted))
    page = paginate_union(
        session,
        scope,
        branches,
        created=RUNS.c.created_at,
        ident=RUNS.c.id,
        limit=limit,
        after=after,
        before=before,
    )
    return Page([RunSummary(*tuple(row)) for row in page.items], page.has_more)


def run_with_event(session: Session, run_id: uuid.UUID) -> tuple[Run, Event | None] | None:
    """The run and the event that started it (None once that event is deleted)."""
    row = session.execute(
        select(Run, Event).outerjoin(Event, Event.id == Run.event_id).where(Run.id == run_id)
    ).first()
    return None if row is None else (row[0], row[1])


def run_steps(session: Session, run_id: uuid.UUID) -> list[RunStep]:
    """Every step row of the run, oldest first."""
    stmt = select(RunStep).where(RunStep.run_id == run_id)
    return list(session.scalars(stmt.order_by(RunStep.created_at, RunStep.step_key)))
