"""Reads of the hourly rollup (models/rollups.py): what every metric is computed from.

Each read costs the rollup rows of the hours asked for (a few per automation and hour), never
the runs or steps themselves.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from models.enums import RunStatus
from models.rollups import DurationRollup, RunRollup, StepRollup
from models.tables import AutomationVersion

RUN_STATUSES = [str(status) for status in RunStatus]
ENDED = [status for status in RUN_STATUSES if status != RunStatus.RUNNING]


@dataclass(frozen=True)
class Hours:
    """Whole UTC hours [first, end), as hours since the Unix epoch."""

    first: int
    end: int


@dataclass(frozen=True)
class StepTotals:
    """A step key's rows in the rollup, summed: how many exist and how they ended."""

    step_key: str
    step_type: str
    steps: int
    completed: int
    failed: int
    cancelled: int
    skipped_unsubscribed: int
    skipped_branch_not_taken: int
    skipped_contact_deleted: int


@dataclass(frozen=True)
class RecoveryCounts:
    """How the window's runs were recovered by operators."""

    retried_runs: int
    retries: int
    replays: int


def _sum(column: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), 0)


def _window(model: Any, hours: Hours, *, hourly: bool = False) -> ColumnElement[bool]:
    """The model's rows covering these hours: day rows (span 24) for the whole UTC days among
    them, hour rows (span 1) for the rest; hour rows only if `hourly`."""
    first_day = -(-hours.first // 24) * 24
    end_day = hours.end - hours.end % 24
    if hourly or first_day >= end_day:
        return _span(model, 1, hours.first, hours.end)
    return (
        _span(model, 1, hours.first, first_day)
        | _span(model, 24, first_day, end_day)
        | _span(model, 1, end_day, hours.end)
    )


def _span(model: Any, span: int, first: int, end: int) -> ColumnElement[bool]:
    rows: ColumnElement[bool] = (model.span == span) & (model.hour >= first) & (model.hour < end)
    return rows


def _runs_of(automation_id: uuid.UUID, hours: Hours, *, hourly: bool = False) -> Any:
    return (RunRollup.automation_id == automation_id) & _window(RunRollup, hours, hourly=hourly)


def runs_by_hour(
    session: Session, automation_id: uuid.UUID, hours: Hours, *, ended: bool, hourly: bool
) -> list[tuple[int, str, int]]:
    """(hour, status, runs) of the runs created in these hours, or (`ended`) that ended in them;
    whole days come as one row at their first hour unless `hourly`."""
    names = ENDED if ended else RUN_STATUSES
    columns = [RunRollup.__table__.c[("ended_" if ended else "") + name] for name in names]
    stmt = (
        select(RunRollup.hour, *(_sum(column) for column in columns))
        .where(_runs_of(automation_id, hours, hourly=hourly))
        .group_by(RunRollup.hour)
    )
    return [
        (int(row[0]), status, int(count))
        for row in session.execute(stmt)
        for status, count in zip(names, row[1:], strict=True)
        if count
    ]


def recovery_counts(session: Session, automation_id: uuid.UUID, hours: Hours) -> RecoveryCounts:
    """Runs retried at least once, retries in all, and runs that replay another."""
    stmt = select(
        _sum(RunRollup.retried_runs), _sum(RunRollup.retries), _sum(RunRollup.replays)
    ).where(_runs_of(automation_id, hours))
    row = session.execute(stmt).one()
    return RecoveryCounts(int(row[0]), int(row[1]), int(row[2]))


def duration_buckets(
    session: Session, automation_id: uuid.UUID | None, hours: Hours
) -> dict[int, int]:
    """How many timed runs created in these hours took a time in each bucket; every
    automation's runs when `automation_id` is None."""
    stmt = select(DurationRollup.bucket, _sum(DurationRollup.runs)).where(
        _window(DurationRollup, hours)
    )
    if automation_id is not None:
        stmt = stmt.where(DurationRollup.automation_id == automation_id)
    rows = session.execute(stmt.group_by(DurationRollup.bucket))
    return {int(bucket): int(count) for bucket, count in rows if count}


_STEP_COUNTERS = (
    StepRollup.steps,
    StepRollup.completed,
    StepRollup.failed,
    StepRollup.cancelled,
    StepRollup.skipped_unsubscribed,
    StepRollup.skipped_branch_not_taken,
    StepRollup.skipped_contact_deleted,
)


def step_totals(session: Session, automation_id: uuid.UUID, hours: Hours) -> list[StepTotals]:
    """Step rows of the runs created in these hours, per step key and type."""
    stmt = (
        select(StepRollup.step_key, StepRollup.step_type, *map(_sum, _STEP_COUNTERS))
        .where(StepRollup.automation_id == automation_id, _window(StepRollup, hours))
        .group_by(StepRollup.step_key, StepRollup.step_type)
    )
    return [StepTotals(row[0], row[1], *map(int, row[2:])) for row in session.execute(stmt)]


def runs_by_status(session: Session) -> dict[str, int]:
    """Every run there is, by its status (from the day rows)."""
    row = session.execute(
        select(*(_sum(RunRollup.__table__.c[name]) for name in RUN_STATUSES)).where(
            RunRollup.span == 24
        )
    ).one()
    return {status: int(count) for status, count in zip(RUN_STATUSES, row, strict=True)}


def steps_by_type(session: Session) -> dict[str, dict[str, int]]:
    """Every step row there is, by type: how many, and how many ended each way (day rows)."""
    stmt = (
        select(StepRollup.step_type, *map(_sum, _STEP_COUNTERS))
        .where(StepRollup.span == 24)
        .group_by(StepRollup.step_type)
    )
    names = [column.key for column in _STEP_COUNTERS]
    found: dict[str, dict[str, int]] = defaultdict(dict)
    for row in session.execute(stmt):
        found[row[0]] = {name: int(count) for name, count in zip(names, row[1:], strict=True)}
    return dict(found)


def version_count(session: Session, automation_id: uuid.UUID) -> int:
    """How many graph versions the automation has had."""
    stmt = select(func.count()).where(AutomationVersion.automation_id == automation_id)
    return int(session.scalar(stmt) or 0)


def older_graphs(
    session: Session, automation_id: uuid.UUID, until: dt.datetime
) -> list[dict[str, Any]]:
    """Graphs of the versions made before `until`, newest first: the ones runs could follow."""
    stmt = (
        select(AutomationVersion.graph)
        .where(AutomationVersion.automation_id == automation_id)
        .where(AutomationVersion.created_at < until)
        .order_by(AutomationVersion.number.desc())
    )
    return list(session.scalars(stmt))
