"""Reads behind the dashboard that the API does not need: recent counts, contacts, keys."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.enums import RunStatus
from models.tables import ApiKey, Automation, Contact, Run


def recent_run_counts(
    session: Session, automation_ids: Collection[uuid.UUID], since: dt.datetime
) -> dict[uuid.UUID, dict[str, int]]:
    """Runs created since `since`, counted by automation and status (index on automation, time)."""
    if not automation_ids:
        return {}
    stmt = (
        select(Run.automation_id, Run.status, func.count())
        .where(Run.automation_id.in_(list(automation_ids)), Run.created_at >= since)
        .group_by(Run.automation_id, Run.status)
    )
    counts: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    for automation_id, status, count in session.execute(stmt):
        counts[automation_id][status] = count
    return dict(counts)


def last_run_times(
    session: Session, automation_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, dt.datetime]:
    """When each automation's newest run was created; absent for automations without runs."""
    if not automation_ids:
        return {}
    # A correlated max() is one backward index probe per automation; GROUP BY would scan them all.
    latest = (
        select(func.max(Run.created_at))
        .where(Run.automation_id == Automation.id)
        .correlate(Automation)
        .scalar_subquery()
    )
    rows = session.execute(select(Automation.id, latest).where(Automation.id.in_(automation_ids)))
    return {automation_id: moment for automation_id, moment in rows if moment is not None}


def running_count(session: Session, automation_id: uuid.UUID) -> int:
    """How many of the automation's runs are still in flight."""
    stmt = (
        select(func.count())
        .select_from(Run)
        .where(Run.automation_id == automation_id, Run.status == RunStatus.RUNNING)
    )
    return int(session.scalar(stmt) or 0)


def contacts_by_id(
    session: Session, contact_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Contact]:
    """The contacts with these ids (deleted ones are simply absent)."""
    if not contact_ids:
        return {}
    rows = session.scalars(select(Contact).where(Contact.id.in_(list(contact_ids))))
    return {contact.id: contact for contact in rows}


def api_key_hash(session: Session, key_id: uuid.UUID) -> tuple[str, str] | None:
    """(token hash, permission) of a stored API key, or None once it is deleted."""
    row = session.execute(
        select(ApiKey.token_hash, ApiKey.permission).where(ApiKey.id == key_id)
    ).first()
    return None if row is None else (row[0], row[1])
