"""Aggregates behind an automation's metrics, counted in the database for a window of runs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Integer, cast, func, select, text
from sqlalchemy.orm import Session

from models.enums import OutboxStatus
from models.tables import AutomationVersion, OutboxEmail, Run, RunStep

# Up to this many runs, their step and outbox rows are fetched by index; beyond it one pass over
# those tables (a hash join) is cheaper. PostgreSQL's estimates pick the hash join for both.
PROBE_LIMIT = 5000


@dataclass(frozen=True)
class StepCount:
    step_key: str
    step_type: str
    status: str
    skip_reason: str | None
    count: int


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _plan_for_these_values(session: Session) -> bool:
    """On PostgreSQL, plan the rest of this transaction's queries for their own bounds."""
    # psycopg prepares a statement run often; PostgreSQL's generic plan for it ignores how many
    # runs the window holds, and was measured 3 to 4 times slower on 100,000 runs.
    if not _postgres(session):
        return False
    session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    return True


def _window(automation_id: uuid.UUID, since: dt.datetime, until: dt.datetime) -> Any:
    return (
        (Run.automation_id == automation_id) & (Run.created_at >= since) & (Run.created_at < until)
    )


def _bucket(session: Session, column: Any, origin: dt.datetime, width: dt.timedelta) -> Any:
    """The index of the time bucket of `column`, counted from `origin` in steps of `width`."""
    seconds = width.total_seconds()
    if _postgres(session):
        return func.floor((func.extract("epoch", column) - origin.timestamp()) / seconds)
    # SQLite keeps naive UTC text, which strftime('%s') reads as UTC.
    epoch = cast(func.strftime("%s", column), Integer)
    return cast((epoch - int(origin.timestamp())) / seconds, Integer)


def version_count(session: Session, automation_id: uuid.UUID) -> int:
    """How many graph versions the automation has had."""
    stmt = select(func.count()).where(AutomationVersion.automation_id == automation_id)
    return int(session.scalar(stmt) or 0)


def window_graphs(
    session: Session, automation_id: uuid.UUID, since: dt.datetime, until: dt.datetime
) -> list[dict[str, Any]]:
    """Graphs of the versions the window's runs were pinned to, newest version first."""
    versions = select(Run.version_id).where(_window(automation_id, since, until)).distinct()
    stmt = (
        select(AutomationVersion.graph)
        .where(AutomationVersion.id.in_(versions))
        .order_by(AutomationVersion.number.desc())
    )
    return list(session.scalars(stmt))


def run_buckets(
    session: Session,
    automation_id: uuid.UUID,
    since: dt.datetime,
    until: dt.datetime,
    *,
    origin: dt.datetime,
    width: dt.timedelta,
    finished: bool,
) -> list[tuple[int, str, int]]:
    """(bucket, status, runs) of the runs created in the window, by creation or by end time."""
    _plan_for_these_values(session)
    column = Run.completed_at if finished else Run.created_at
    bucket = _bucket(session, column, origin, width)
    stmt = select(bucket, Run.status, func.count()).where(_window(automation_id, since, until))
    if finished:
        stmt = stmt.where(Run.completed_at >= since, Run.completed_at < until)
    rows = session.execute(stmt.group_by(bucket, Run.status))
    return [(int(index), status, count) for index, status, count in rows]


def run_durations(
    session: Session,
    automation_id: uuid.UUID,
    since: dt.datetime,
    until: dt.datetime,
    *,
    statuses: Collection[str],
) -> list[float]:
    """Seconds from start to end of the window's runs of these statuses that started and ended."""
    where = _window(automation_id, since, until) & Run.status.in_(sorted(statuses))
    where = where & Run.started_at.is_not(None) & Run.completed_at.is_not(None)
    if _plan_for_these_values(session):
        seconds = cast(func.extract("epoch", Run.completed_at - Run.started_at), Float)
        return [float(value) for value in session.scalars(select(seconds).where(where))]
    # SQLite's date functions round to milliseconds: subtract in Python, to the microsecond.
    rows = session.execute(select(Run.started_at, Run.completed_at).where(where))
    return [(end - began).total_seconds() for began, end in rows if began and end]


def _runs_of_window(
    session: Session, column: Any, automation_id: uuid.UUID, since: dt.datetime, until: dt.datetime
) -> Any:
    """`column` (a run id) is one of the window's runs, spelt for the planner to pick well."""
    runs = select(Run.id).where(_window(automation_id, since, until))
    if _plan_for_these_values(session):
        probe = select(func.count()).select_from(runs.limit(PROBE_LIMIT + 1).subquery())
        if (session.scalar(probe) or 0) <= PROBE_LIMIT:
            return column == func.any(func.array(runs.scalar_subquery()))
    return column.in_(runs)


def step_counts(
    session: Session, automation_id: uuid.UUID, since: dt.datetime, until: dt.datetime
) -> list[StepCount]:
    """Step rows of the window's runs, counted by key, type, status and skip reason."""
    columns = (RunStep.step_key, RunStep.step_type, RunStep.status, RunStep.skip_reason)
    stmt = (
        select(*columns, func.count())
        .where(_runs_of_window(session, RunStep.run_id, automation_id, since, until))
        .group_by(*columns)
    )
    return [StepCount(*row) for row in session.execute(stmt)]


def emails_sent(
    session: Session, automation_id: uuid.UUID, since: dt.datetime, until: dt.datetime
) -> int:
    """Outbox emails marked sent for the window's runs."""
    stmt = (
        select(func.count())
        .select_from(OutboxEmail)
        .where(
            _runs_of_window(session, OutboxEmail.run_id, automation_id, since, until),
            OutboxEmail.status == OutboxStatus.SENT,
        )
    )
    return int(session.scalar(stmt) or 0)


@dataclass(frozen=True)
class RecoveryCounts:
    """How the window's runs were recovered by operators."""

    retried_runs: int
    retries: int
    replays: int


def recovery_counts(
    session: Session, automation_id: uuid.UUID, since: dt.datetime, until: dt.datetime
) -> RecoveryCounts:
    """Runs retried at least once, retries in all, and runs that replay another."""
    stmt = select(
        func.count().filter(Run.retries > 0),
        func.coalesce(func.sum(Run.retries), 0),
        func.count().filter(Run.replay_of.is_not(None)),
    ).where(_window(automation_id, since, until))
    row = session.execute(stmt).one()
    return RecoveryCounts(int(row[0]), int(row[1]), int(row[2]))
