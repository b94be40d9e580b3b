"""The sweeper's reads: indexed by due time, so a tick costs what is due, not what waits."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from models.enums import STEP_CLAIMABLE, StepStatus
from models.tables import RunStep


@dataclass(frozen=True)
class DueStep:
    run_id: uuid.UUID
    step_key: str
    step_type: str
    due_at: dt.datetime | None


def _select_due() -> tuple:  # type: ignore[type-arg]
    return (RunStep.run_id, RunStep.step_key, RunStep.step_type, RunStep.due_at)


def steps_to_promote(session: Session, *, horizon_end: dt.datetime, limit: int) -> list[DueStep]:
    """Steps due before the horizon's end that no message has been sent for yet."""
    rows = session.execute(
        select(*_select_due())
        .where(
            RunStep.status.in_(STEP_CLAIMABLE),
            RunStep.due_at <= horizon_end,
            RunStep.dispatched_at.is_(None),
        )
        .order_by(RunStep.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [DueStep(*row) for row in rows]


def steps_overdue(session: Session, *, stale_before: dt.datetime, limit: int) -> list[DueStep]:
    """Steps due and sent to the broker long ago but still not claimed: their message is lost."""
    rows = session.execute(
        select(*_select_due())
        .where(
            RunStep.status.in_(STEP_CLAIMABLE),
            RunStep.due_at <= stale_before,
            RunStep.dispatched_at <= stale_before,
        )
        .order_by(RunStep.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [DueStep(*row) for row in rows]


def steps_abandoned(session: Session, *, now: dt.datetime, limit: int) -> list[DueStep]:
    """Steps claimed by a worker whose lease ran out: the worker died or hangs."""
    rows = session.execute(
        select(*_select_due())
        .where(RunStep.status == StepStatus.RUNNING, RunStep.lease_expires_at < now)
        .order_by(RunStep.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [DueStep(*row) for row in rows]


def mark_dispatched(session: Session, steps: list[DueStep], now: dt.datetime) -> None:
    if not steps:
        return
    keys = [(step.run_id, step.step_key) for step in steps]
    session.execute(
        update(RunStep)
        .where(tuple_(RunStep.run_id, RunStep.step_key).in_(keys))
        .values(dispatched_at=now)
        .execution_options(synchronize_session=False)
    )
