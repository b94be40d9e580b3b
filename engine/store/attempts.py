"""Step attempts: the tries of a step that did not end it, kept for the run's audit."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

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
