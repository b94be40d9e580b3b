"""Reads behind the dashboard that the API does not need: recent counts, contacts, keys."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Integer, cast, func, select, text
from sqlalchemy.orm import Session

from engine.metrics import percentile
from engine.store.reports import StepCount
from models.enums import OutboxStatus, RunStatus
from models.tables import (
    ApiKey,
    Automation,
    AutomationVersion,
    Contact,
    OutboxEmail,
    Run,
    RunStep,
)

# Up to this many runs, their step and outbox rows are fetched by index; beyond it one pass over
# those tables (a hash join) is cheaper. PostgreSQL's estimates pick the hash join for both.
PROBE_LIMIT = 5000


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


def version_count(session: Session, automation_id: uuid.UUID) -> int:
    """How many graph versions the automation has had."""
    stmt = select(func.count()).where(AutomationVersion.automation_id == automation_id)
    return int(session.scalar(stmt) or 0)


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
    quantiles: Sequence[float],
) -> tuple[int, list[float | None]]:
    """How many of the window's runs of these statuses ended, and quantiles of their durations."""
    where = _window(automation_id, since, until) & Run.status.in_(sorted(statuses))
    where = where & Run.completed_at.is_not(None)
    if _plan_for_these_values(session):
        seconds = func.extract("epoch", Run.completed_at - Run.started_at)
        wanted = [func.percentile_cont(q).within_group(seconds) for q in quantiles]
        row = session.execute(select(func.count(), *wanted).where(where)).one()
        return int(row[0]), [None if v is None else round(float(v), 6) for v in row[1:]]
    # SQLite has no percentile_cont: the same interpolation, over the durations in Python.
    rows = session.execute(select(Run.started_at, Run.completed_at).where(where))
    ordered = sorted((end - began).total_seconds() for began, end in rows if end is not None)
    return len(ordered), [percentile(ordered, q) for q in quantiles]


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
