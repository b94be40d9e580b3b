"""Reads behind the API's lists, details and metrics of automations and runs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.store.paging import Page, paginate
from models.enums import OutboxStatus
from models.tables import Automation, AutomationVersion, Event, OutboxEmail, Run, RunStep


@dataclass(frozen=True)
class RunTimes:
    status: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None


@dataclass(frozen=True)
class StepCount:
    step_key: str
    step_type: str
    status: str
    skip_reason: str | None
    count: int


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


def run_page(
    session: Session,
    automation_id: uuid.UUID,
    *,
    statuses: Collection[str] | None,
    limit: int,
    after: uuid.UUID | None,
    before: uuid.UUID | None,
) -> Page[Run]:
    """An automation's runs, newest first, optionally of some statuses."""
    stmt = select(Run).where(Run.automation_id == automation_id)
    if statuses is not None:
        stmt = stmt.where(Run.status.in_(sorted(statuses)))
    return paginate(
        session, stmt, created=Run.created_at, ident=Run.id, limit=limit, after=after, before=before
    )


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


def _in_window(automation_id: uuid.UUID, start: dt.datetime, end: dt.datetime) -> Any:
    return (Run.automation_id == automation_id) & (Run.created_at >= start) & (Run.created_at < end)


def window_runs(
    session: Session, automation_id: uuid.UUID, start: dt.datetime, end: dt.datetime
) -> Iterator[RunTimes]:
    """Status and times of the runs created in [start, end), streamed in batches."""
    stmt = (
        select(Run.status, Run.created_at, Run.started_at, Run.completed_at)
        .where(_in_window(automation_id, start, end))
        .execution_options(yield_per=2000)
    )
    for row in session.execute(stmt):
        yield RunTimes(*row)


def window_step_counts(
    session: Session, automation_id: uuid.UUID, start: dt.datetime, end: dt.datetime
) -> list[StepCount]:
    """Step rows of the window's runs, counted by key, type, status and skip reason."""
    columns = (RunStep.step_key, RunStep.step_type, RunStep.status, RunStep.skip_reason)
    stmt = (
        select(*columns, func.count())
        .join(Run, Run.id == RunStep.run_id)
        .where(_in_window(automation_id, start, end))
        .group_by(*columns)
    )
    return [StepCount(*row) for row in session.execute(stmt)]


def window_emails_sent(
    session: Session, automation_id: uuid.UUID, start: dt.datetime, end: dt.datetime
) -> int:
    """Outbox emails marked sent for the window's runs."""
    stmt = (
        select(func.count())
        .select_from(OutboxEmail)
        .join(Run, Run.id == OutboxEmail.run_id)
        .where(_in_window(automation_id, start, end), OutboxEmail.status == OutboxStatus.SENT)
    )
    return int(session.scalar(stmt) or 0)


def window_graphs(
    session: Session, automation_id: uuid.UUID, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    """Graphs of the versions the window's runs were pinned to, newest version first."""
    versions = select(Run.version_id).where(_in_window(automation_id, start, end)).distinct()
    stmt = (
        select(AutomationVersion.graph)
        .where(AutomationVersion.id.in_(versions))
        .order_by(AutomationVersion.number.desc())
    )
    return list(session.scalars(stmt))
