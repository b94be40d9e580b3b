"""Reads behind the API's lists and details of automations and runs."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.store.paging import Page, paginate
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
