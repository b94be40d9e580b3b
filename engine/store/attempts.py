"""Step attempts: the tries of a step that did not end it, kept for the run's audit, and the
counts of its failed tries and of the workers it lost."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from engine.store.core import STEPS, THIS_STEP, execute, one_of
from models.enums import STEP_ACTIVE, StepStatus
from models.tables import StepAttempt


def archive_attempt(
    session: Session,
    run_id: uuid.UUID,
    step_key: str,
    *,
    status: str,
    started_at: dt.datetime | None,
    completed_at: dt.datetime,
    error: dict[str, Any] | None,
) -> int:
    """Keep a finished try of the step; its number (1 for the step's first try)."""
    last = session.scalar(
        select(func.max(StepAttempt.number)).where(
            StepAttempt.run_id == run_id, StepAttempt.step_key == step_key
        )
    )
    number = (last or 0) + 1
    session.execute(
        insert(StepAttempt).values(
            run_id=run_id,
            step_key=step_key,
            number=number,
            status=status,
            started_at=started_at,
            completed_at=completed_at,
            error=error,
        )
    )
    return number


def attempts_by_step(session: Session, run_id: uuid.UUID) -> dict[str, list[StepAttempt]]:
    """The run's archived attempts, by step key, oldest first."""
    rows = session.scalars(
        select(StepAttempt)
        .where(StepAttempt.run_id == run_id)
        .order_by(StepAttempt.step_key, StepAttempt.number)
    )
    found: dict[str, list[StepAttempt]] = defaultdict(list)
    for row in rows:
        found[row.step_key].append(row)
    return dict(found)


_COUNT_FAILURE = (
    update(STEPS)
    .where(THIS_STEP)
    .values(failed_attempts=STEPS.c.failed_attempts + 1)
    .returning(STEPS.c.failed_attempts)
)


def count_failed_attempt(session: Session, run_id: uuid.UUID, step_key: str) -> int:
    """One more failed try of the step; how many it has had since it was reached or retried."""
    counted = execute(session, _COUNT_FAILURE, {"rid": run_id, "key": step_key}).scalar()
    return int(counted or 0)


@dataclass(frozen=True)
class WorkerLoss:
    """A step whose worker died running it, once the death is counted."""

    status: str
    attempt: int
    losses: int


LOSS_LOCK_TIMEOUT_MS = 5000

_COUNT_LOSS = (
    update(STEPS)
    .where(
        THIS_STEP,
        one_of(STEPS.c.status, STEP_ACTIVE),
        # A running step's loss is its claim's: counted once, whoever reports it first.
        or_(
            STEPS.c.status != StepStatus.RUNNING,
            STEPS.c.lost_attempt.is_(None),
            STEPS.c.lost_attempt != STEPS.c.attempt,
        ),
    )
    .values(
        worker_losses=STEPS.c.worker_losses + 1,
        lost_attempt=case(
            (STEPS.c.status == StepStatus.RUNNING, STEPS.c.attempt), else_=STEPS.c.lost_attempt
        ),
    )
    .returning(STEPS.c.status, STEPS.c.attempt, STEPS.c.worker_losses)
)


def count_worker_loss(session: Session, run_id: uuid.UUID, step_key: str) -> WorkerLoss | None:
    """One more death of a worker running the step, locked; None if it is not counted: the step
    has ended (the worker died after it), or its claim's death is counted already.

    For a worker's parent process, which must not stall behind a lock held by a live
    transaction: on PostgreSQL the wait for the step's row lock is bounded (a dead child's
    transaction is rolled back as soon as its connection drops).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = '{LOSS_LOCK_TIMEOUT_MS}ms'"))
    row = execute(session, _COUNT_LOSS, {"rid": run_id, "key": step_key}).first()
    return WorkerLoss(*tuple(row)) if row is not None else None
