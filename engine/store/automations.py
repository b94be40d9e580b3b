"""Automations and their immutable versions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models.enums import AutomationStatus
from models.ids import new_id
from models.tables import Automation, AutomationVersion


def create_automation(
    session: Session,
    *,
    name: str,
    status: AutomationStatus,
    graph: dict[str, Any],
    trigger_event: str,
    now: dt.datetime,
) -> Automation:
    automation = Automation(
        id=new_id(),
        name=name,
        status=status,
        trigger_event=trigger_event,
        created_at=now,
        updated_at=now,
    )
    session.add(automation)
    session.flush()
    add_version(session, automation, graph=graph, trigger_event=trigger_event, now=now)
    return automation


def add_version(
    session: Session,
    automation: Automation,
    *,
    graph: dict[str, Any],
    trigger_event: str,
    now: dt.datetime,
) -> AutomationVersion:
    """Snapshot a new graph and make it the automation's current one."""
    number = session.scalar(
        select(func.coalesce(func.max(AutomationVersion.number), 0)).where(
            AutomationVersion.automation_id == automation.id
        )
    )
    version = AutomationVersion(
        id=new_id(),
        automation_id=automation.id,
        number=(number or 0) + 1,
        graph=graph,
        created_at=now,
    )
    session.add(version)
    session.flush()
    automation.current_version_id = version.id
    automation.trigger_event = trigger_event
    automation.updated_at = now
    return version


def get_automation(session: Session, automation_id: uuid.UUID) -> Automation | None:
    stmt = select(Automation).where(Automation.id == automation_id, Automation.deleted_at.is_(None))
    return session.scalars(stmt).first()


def automation_ever_existed(session: Session, automation_id: uuid.UUID) -> bool:
    """Whether the automation exists, deleted or not (a deleted one keeps its row)."""
    stmt = select(Automation.id).where(Automation.id == automation_id)
    return session.scalar(stmt) is not None


def hold_automation(session: Session, automation_id: uuid.UUID) -> Automation | None:
    """The automation unless deleted, share-locked: a deletion (which locks it FOR NO KEY UPDATE
    and cancels its running runs) waits for this transaction, or this waits for it and finds it
    gone."""
    stmt = select(Automation).where(Automation.id == automation_id, Automation.deleted_at.is_(None))
    return session.scalars(stmt.with_for_update(read=True)).first()


def lock_automation(session: Session, automation_id: uuid.UUID) -> Automation | None:
    """The automation unless deleted, locked against its other writers and holders until this
    transaction ends, not against the runs it starts (FOR NO KEY UPDATE)."""
    stmt = select(Automation).where(Automation.id == automation_id, Automation.deleted_at.is_(None))
    return session.scalars(stmt.with_for_update(key_share=True)).first()


def version_graph(session: Session, version_id: uuid.UUID) -> dict[str, Any] | None:
    return session.scalar(select(AutomationVersion.graph).where(AutomationVersion.id == version_id))


def set_status(
    session: Session, automation_id: uuid.UUID, status: AutomationStatus, now: dt.datetime
) -> None:
    session.execute(
        update(Automation)
        .where(Automation.id == automation_id)
        .values(status=status, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def mark_deleted(session: Session, automation_id: uuid.UUID, now: dt.datetime) -> None:
    session.execute(
        update(Automation)
        .where(Automation.id == automation_id)
        .values(deleted_at=now, status=AutomationStatus.DISABLED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
