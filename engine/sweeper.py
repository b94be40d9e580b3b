"""The sweeper: promotes timers into countdowns, recovers lost and abandoned steps."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from engine.dispatch import Dispatch
from engine.runtime import Runtime
from engine.store import sweeps
from models.enums import StepType


def sweep(session: Session, rt: Runtime, *, now: dt.datetime) -> list[Dispatch]:
    """One tick: the steps to enqueue, each marked as dispatched in this transaction."""
    limit = rt.settings.sweeper_batch_size
    stale_before = now - dt.timedelta(seconds=rt.settings.stale_after_seconds)
    due = [
        *sweeps.steps_to_promote(session, horizon_end=now + rt.horizon, limit=limit),
        *sweeps.steps_overdue(session, stale_before=stale_before, limit=limit),
        *sweeps.steps_abandoned(session, now=now, limit=limit),
    ]
    sweeps.mark_dispatched(session, due, now)
    return [
        Dispatch(
            step.run_id,
            step.step_key,
            StepType(step.step_type),
            countdown=max((step.due_at - now).total_seconds(), 0.0) if step.due_at else 0.0,
        )
        for step in due
    ]
