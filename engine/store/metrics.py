"""Reads of the hourly rollup (models/rollups.py): what every metric is computed from.

Each read costs the rollup rows of the hours asked for (a few per automation and hour), never
the runs or steps themselves.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, select
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
    unreached: int


@dataclass(frozen=True)
class RecoveryCounts:
    """How the window's runs were recovered by operators."""

    retried_runs: int
    retries: int
    replays: int


def _sum(column: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), 0)


# Each read's statement is built once per shape and run with the window's bounds as parameters:
# building it anew each time cost more than PostgreSQL's answer.


def _bounds(hours: Hours, *, hourly: bool = False) -> tuple[bool, dict[str, int]]:
    """Whether these hours hold whole UTC days (read as day rows, hours at the edges, unless
    `hourly`), and the parameters of `_window`'s bounds."""
    first_day = -(-hours.first // 24) * 24
    end_day = hours.end - hours.end % 24
    if hourly or first_day >= end_day:
        return False, {"first": hours.first, "end": hours.end}
    return True, {
        "first": hours.first,
        "first_day": first_day,
        "end_day": end_day,
        "end": hours.end,
    }


def _window(model: Any, by_day: bool) -> ColumnElement[bool]:
    """The model's rows covering the bound hours: day rows (span 24) for the whole UTC days
    among them and hour rows (span 1) for the rest if `by_day`, else hour rows only."""
    if not by_day:
        return _span(model, 1, "first", "end")
    return (
        _span(model, 1, "first", "first_day")
        | _span(model, 24, "first_day", "end_day")
        | _span(model, 1, "end_day", "end")
    )


def _span(model: Any, span: int, first: str, end: str) -> ColumnElement[bool]:
    rows: ColumnElement[bool] = (
        (model.span == span) & (model.hour >= bindparam(first)) & (model.hour < bindparam(end))
    )
    return rows


def _runs_of(by_day: bool) -> ColumnElement[bool]:
    automation: ColumnElement[bool] = RunRollup.automation_id == bindparam("automation_id")
    return automation & _window(RunRollup, by_day)


@cache
def _runs_by_hour(ended: bool, by_day: bool) -> Select[Any]:
    names = ENDED if ended else RUN_STATUSES
    columns = [RunRollup.__table__.c[("ended_" if ended else "") + name] for name in names]
    return (
        select(RunRollup.hour, *(_sum(column) for column in columns))
        .where(_runs_of(by_day))
        .group_by(RunRollup.hour)
    )


def runs_by_hour(
    session: Session, automation_id: uuid.UUID, hours: Hours, *, ended: bool, hourly: bool
) -> list[tuple[int, str, int]]:
    """(hour, status, runs) of the runs created in these hours, or (`ended`) that ended in them;
    whole days come as one row at their first hour unless `hourly`."""
    names = ENDED if ended else RUN_STATUSES
    by_day, bounds = _bounds(hours, hourly=hourly)
    rows = session.execute(_runs_by_hour(ended, by_day), {"automation_id": automation_id, **bounds})
    return [
        (int(row[0]), status, int(count))
        for row in rows
        for status, count in zip(names, row[1:], strict=True)
        if count
    ]


@cache
def _recovery(by_day: bool) -> Select[Any]:
    sums = (_sum(RunRollup.retried_runs), _sum(RunRollup.retries), _sum(RunRollup.replays))
    return select(*sums).where(_runs_of(by_day))


def recovery_counts(session: Session, automation_id: uuid.UUID, hours: Hours) -> RecoveryCounts:
    """Runs retried at least once, retries in all, and runs that replay another."""
    by_day, bounds = _bounds(hours)
    row = session.execute(_recovery(by_day), {"automation_id": automation_id, **bounds}).one()
    return RecoveryCounts(int(row[0]), int(row[1]), int(row[2]))


@cache
def _durations(by_day: bool, of_one_automation: bool) -> Select[Any]:
    stmt = select(DurationRollup.bucket, _sum(DurationRollup.runs)).where(
        _window(DurationRollup, by_day)
    )
    if of_one_automation:
        stmt = stmt.where(DurationRollup.automation_id == bindparam("automation_id"))
    return stmt.group_by(DurationRollup.bucket)


def duration_buckets(
    session: Session, automation_id: uuid.UUID | None, hours: Hours
) -> dict[int, int]:
    """How many timed runs created in these hours took a time in each bucket; every
    automation's runs when `automation_id` is None."""
    by_day, bounds = _bounds(hours)
    params: dict[str, Any] = dict(bounds)
    if automation_id is not None:
        params["automation_id"] = automation_id
    rows = session.execute(_durations(by_day, automation_id is not None), params)
    return {int(bucket): int(count) for bucket, count in rows if count}


_STEP_COUNTERS = (
    StepRollup.steps,
    StepRollup.completed,
    StepRollup.failed,
    StepRollup.cancelled,
    StepRollup.skipped_unsubscribed,
    StepRollup.skipped_branch_not_taken,
    StepRollup.skipped_contact_deleted,
    StepRollup.unreached,
)


@cache
def _step_totals(by_day: bool) -> Select[Any]:
    return (
        select(StepRollup.step_key, StepRollup.step_type, *map(_sum, _STEP_COUNTERS))
        .where(StepRollup.automation_id == bindparam("automation_id"), _window(StepRollup, by_day))
        .group_by(StepRollup.step_key, StepRollup.step_type)
    )


def step_totals(session: Session, automation_id: uuid.UUID, hours: Hours) -> list[StepTotals]:
    """Step rows of the runs created in these hours, per step key and type."""
    by_day, bounds = _bounds(hours)
    rows = session.execute(_step_totals(by_day), {"automation_id": automation_id, **bounds})
    return [StepTotals(row[0], row[1], *map(int, row[2:])) for row in rows]


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
