"""Reads for health checks and the Prometheus endpoint: counts and ages, all indexed."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from models.enums import STEP_CLAIMABLE, BulkStatus, OutboxStatus
from models.tables import Automation, BulkOperation, OutboxEmail, Run, RunStep


def ping(session: Session) -> None:
    session.execute(text("SELECT 1"))


def server_now(session: Session) -> dt.datetime:
    """The database server's clock now (PostgreSQL; not its transaction's start, `now()`)."""
    value: dt.datetime = session.execute(text("SELECT clock_timestamp()")).scalar_one()
    return value


def runs_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Run.status, func.count()).group_by(Run.status)).all()
    return {status: count for status, count in rows}


def emails_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(OutboxEmail.status, func.count()).group_by(OutboxEmail.status)
    ).all()
    return {status: count for status, count in rows if status in set(OutboxStatus)}


def oldest_due(session: Session, now: dt.datetime) -> dt.datetime | None:
    """The due time of the longest-waiting step that is due now: the queue's lag."""
    return session.scalar(
        select(func.min(RunStep.due_at)).where(
            RunStep.status.in_(STEP_CLAIMABLE), RunStep.due_at <= now
        )
    )


def operations_under_way(session: Session) -> dict[str, int]:
    """Work the workers carry out in the background, by kind: cancels of an automation's runs
    (a stop with `cancel_runs`, a deletion) and bulk retries and replays. Partial indexes."""
    cancels = session.scalar(select(func.count()).where(Automation.runs_cancelling_at.is_not(None)))
    bulks = session.execute(
        select(BulkOperation.action, func.count())
        .where(BulkOperation.status == BulkStatus.RUNNING)
        .group_by(BulkOperation.action)
    ).all()
    counts = {"cancel_runs": int(cancels or 0), "bulk_retry": 0, "bulk_replay": 0}
    counts.update({f"bulk_{action}": count for action, count in bulks})
    return counts
