"""Runs and their steps: claims, transitions and the reads the executor needs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from models.enums import STEP_CLAIMABLE, RunStatus, StepStatus
from models.tables import Contact, Event, Run, RunStep


@dataclass(frozen=True)
class ClaimedStep:
    run_id: uuid.UUID
    step_key: str
    step_type: str
    attempt: int
    started_at: dt.datetime | None
    created_at: dt.datetime
    due_at: dt.datetime | None
    output: dict[str, Any] | None


@dataclass(frozen=True)
class RunContext:
    run: Run
    event_payload: dict[str, Any]
    contact: Contact | None


@dataclass(frozen=True)
class StepState:
    step_key: str
    step_type: str
    status: str
    skip_reason: str | None
    branch: str | None


def claim_step(
    session: Session,
    run_id: uuid.UUID,
    step_key: str,
    *,
    now: dt.datetime,
    lease_until: dt.datetime,
) -> ClaimedStep | None:
    """Compare-and-set a due step to running; None means a duplicate or stale message."""
    claimable = and_(
        RunStep.status.in_(STEP_CLAIMABLE), or_(RunStep.due_at.is_(None), RunStep.due_at <= now)
    )
    abandoned = and_(RunStep.status == StepStatus.RUNNING, RunStep.lease_expires_at < now)
    row = session.execute(
        update(RunStep)
        .where(RunStep.run_id == run_id, RunStep.step_key == step_key, or_(claimable, abandoned))
        .values(
            status=StepStatus.RUNNING, attempt=RunStep.attempt + 1, lease_expires_at=lease_until
        )
        .returning(
            RunStep.step_type,
            RunStep.attempt,
            RunStep.started_at,
            RunStep.created_at,
            RunStep.due_at,
            RunStep.output,
        )
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return None
    return ClaimedStep(run_id, step_key, *row)


def lock_run_context(session: Session, run_id: uuid.UUID) -> RunContext | None:
    """The run (locked for this transaction), its trigger event's payload and its contact."""
    row = session.execute(
        select(Run, Event.payload, Contact)
        .outerjoin(Event, Event.id == Run.event_id)
        .outerjoin(Contact, Contact.id == Run.contact_id)
        .where(Run.id == run_id)
        .with_for_update(of=Run)
    ).first()
    if row is None:
        return None
    return RunContext(run=row[0], event_payload=row[1] or {}, contact=row[2])


def lock_run(session: Session, run_id: uuid.UUID) -> Run | None:
    return session.scalars(select(Run).where(Run.id == run_id).with_for_update()).first()


def insert_run(
    session: Session,
    *,
    automation_id: uuid.UUID,
    version_id: uuid.UUID,
    contact_id: uuid.UUID,
    event_id: uuid.UUID,
    now: dt.datetime,
) -> uuid.UUID:
    run_id = uuid.uuid4()
    session.execute(
        insert(Run).values(
            id=run_id,
            automation_id=automation_id,
            version_id=version_id,
            contact_id=contact_id,
            event_id=event_id,
            status=RunStatus.RUNNING,
            started_at=now,
            created_at=now,
        )
    )
    return run_id


def insert_steps(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Create step rows; every row must carry the same keys."""
    if rows:
        session.execute(insert(RunStep), list(rows))


def update_step(
    session: Session,
    run_id: uuid.UUID,
    step_key: str,
    *,
    started_if_unset: dt.datetime | None = None,
    finished_at: dt.datetime | None = None,
    **values: Any,
) -> None:
    if started_if_unset is not None:
        values["started_at"] = func.coalesce(RunStep.started_at, started_if_unset)
    if finished_at is not None:
        # Never before the start another process stamped: clocks of two processes differ a
        # little, and an event can be stamped just before the wait it resumes registered.
        values["completed_at"] = case(
            (RunStep.started_at > finished_at, RunStep.started_at), else_=finished_at
        )
    session.execute(
        update(RunStep)
        .where(RunStep.run_id == run_id, RunStep.step_key == step_key)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def step_states(session: Session, run_id: uuid.UUID) -> list[StepState]:
    rows = session.execute(
        select(
            RunStep.step_key, RunStep.step_type, RunStep.status, RunStep.skip_reason, RunStep.branch
        ).where(RunStep.run_id == run_id)
    ).all()
    return [StepState(*row) for row in rows]


def wait_outputs(session: Session, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """Outputs of the run's wait_for_event steps that received their event."""
    return [
        output
        for output in session.scalars(
            select(RunStep.output).where(
                RunStep.run_id == run_id,
                RunStep.step_type == "wait_for_event",
                RunStep.branch == "event_received",
            )
        )
        if output
    ]


def finish_run(session: Session, run_id: uuid.UUID, status: RunStatus, now: dt.datetime) -> None:
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(status=status, completed_at=now)
        .execution_options(synchronize_session=False)
    )


def cancel_idle_steps(session: Session, run_ids: Iterable[uuid.UUID], now: dt.datetime) -> None:
    """Cancel steps not in a worker's hands; a running step finishes and sees the run cancelled."""
    session.execute(
        update(RunStep)
        .where(RunStep.run_id.in_(list(run_ids)), RunStep.status.in_(STEP_CLAIMABLE))
        .values(status=StepStatus.CANCELLED, completed_at=now, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def unfinished_run_ids(session: Session, automation_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(Run.id)
            .where(Run.automation_id == automation_id, Run.status == RunStatus.RUNNING)
            .order_by(Run.id)
        )
    )


def cancel_runs(session: Session, run_ids: Sequence[uuid.UUID], now: dt.datetime) -> None:
    """Cancel runs and their unfinished steps (step rows first: the executor's lock order)."""
    if not run_ids:
        return
    cancel_idle_steps(session, run_ids, now)
    session.execute(
        update(Run)
        .where(Run.id.in_(list(run_ids)), Run.status == RunStatus.RUNNING)
        .values(status=RunStatus.CANCELLED, completed_at=now)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class WaitingStep:
    run_id: uuid.UUID
    step_key: str
    version_id: uuid.UUID
    created_at: dt.datetime


def waits_for(
    session: Session, *, contact_id: uuid.UUID, event_name: str, now: dt.datetime
) -> list[WaitingStep]:
    """The contact's wait_for_event steps waiting for this event and not yet timed out."""
    rows = session.execute(
        select(RunStep.run_id, RunStep.step_key, Run.version_id, RunStep.created_at)
        .join(Run, Run.id == RunStep.run_id)
        .where(
            Run.contact_id == contact_id,
            Run.status == RunStatus.RUNNING,
            RunStep.status == StepStatus.WAITING,
            RunStep.wait_event == event_name,
            or_(RunStep.due_at.is_(None), RunStep.due_at > now),
        )
        .order_by(RunStep.created_at)
    ).all()
    return [WaitingStep(*row) for row in rows]


def resume_wait(session: Session, run_id: uuid.UUID, step_key: str, *, now: dt.datetime) -> bool:
    """Compare-and-set a waiting step to running for its event; False if a timeout won."""
    result = session.execute(
        update(RunStep)
        .where(
            RunStep.run_id == run_id,
            RunStep.step_key == step_key,
            RunStep.status == StepStatus.WAITING,
            or_(RunStep.due_at.is_(None), RunStep.due_at > now),
        )
        .values(status=StepStatus.RUNNING, attempt=RunStep.attempt + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def owns_step(session: Session, run_id: uuid.UUID, step_key: str, attempt: int) -> bool:
    """Whether the step is still running under this attempt (no one re-claimed it), locked."""
    status = session.scalar(
        select(RunStep.status)
        .where(RunStep.run_id == run_id, RunStep.step_key == step_key, RunStep.attempt == attempt)
        .with_for_update()
    )
    return status == StepStatus.RUNNING


def get_run(session: Session, run_id: uuid.UUID) -> Run | None:
    return session.get(Run, run_id)
