"""Every metric, from the hourly rollup: an automation's numbers over a window (the API and the
dashboard) and the runtime's totals (Prometheus). Windows are counted in whole UTC hours: a
window's numbers are those of the runs created in the hours that overlap it."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy.orm import Session

from engine.clock import parse_timestamp, utc
from engine.errors import InvalidInput
from engine.graph import Graph
from engine.percentiles import percentiles
from engine.reports import require_automation
from engine.store import automations as automation_store
from engine.store import health as health_store
from engine.store import metrics as metrics_store
from engine.store.metrics import Hours, RecoveryCounts, StepTotals
from engine.store.rollup import hour_of
from engine.sweeper_health import SweeperHealth, sweeper_health
from models.enums import RunStatus, StepType

DEFAULT_SPAN = dt.timedelta(days=7)
MAX_SPAN = dt.timedelta(days=366)
# Prometheus's run duration percentiles cover the runs created in the current UTC hour and
# the RECENT_HOURS - 1 before it.
RECENT_HOURS = 24


def _zeros() -> dict[str, int]:
    return {str(status): 0 for status in RunStatus}


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime
    granularity: Granularity


@dataclass
class StepMetrics:
    key: str
    type: str
    reached: int = 0
    completed: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass
class Bucket:
    start: dt.datetime
    by_status: dict[str, int] = field(default_factory=_zeros)

    @property
    def runs_started(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True)
class RunTally:
    """The window's runs by status and by bucket of creation; how long finished ones took."""

    by_status: dict[str, int]
    series: list[Bucket]
    finished_runs: int
    percentiles: dict[str, float | None]


def series(window: Window, rows: Iterable[tuple[int, str, int]]) -> list[Bucket]:
    """Buckets covering the window, filled from (bucket index, status, runs) rows."""
    buckets = [Bucket(start) for start in bucket_starts(window)]
    for index, status, count in rows:
        if 0 <= index < len(buckets):
            buckets[index].by_status[status] = buckets[index].by_status.get(status, 0) + count
    return buckets


def tally(started: list[Bucket], durations: dict[int, int]) -> RunTally:
    """Counts by status from the series of runs started; percentiles of the timed runs'
    durations, counted per bucket of engine/percentiles.py."""
    by_status = _zeros()
    for bucket in started:
        for status, count in bucket.by_status.items():
            by_status[status] = by_status.get(status, 0) + count
    return RunTally(by_status, started, sum(durations.values()), percentiles(durations))


@dataclass(frozen=True)
class Metrics:
    automation_id: uuid.UUID
    window: Window
    runs: RunTally
    steps: list[StepMetrics]
    emails_sent: int
    emails_skipped_unsubscribed: int
    recovery: RecoveryCounts = field(default_factory=lambda: RecoveryCounts(0, 0, 0))


def parse_window(
    start: str | None, end: str | None, granularity: str | None, *, now: dt.datetime
) -> Window:
    """The metrics window [start, end); by default the last 7 days by day; at most 366 days."""
    try:
        # An empty `granularity=` is refused like any other value that is not hour or day.
        step = Granularity(Granularity.DAY if granularity is None else granularity)
    except ValueError:
        raise InvalidInput(
            "`granularity` must be `hour` or `day`", field="granularity", code="invalid_parameter"
        ) from None
    until = parse_timestamp(end, "end") if end is not None else utc(now)
    since = parse_timestamp(start, "start") if start is not None else until - DEFAULT_SPAN
    if until <= since:
        raise InvalidInput("`end` must be later than `start`", field="end")
    if until - since > MAX_SPAN:
        raise InvalidInput(
            "The window from `start` to `end` may span at most 366 days", field="end"
        )
    return Window(since, until, step)


def _floor(moment: dt.datetime, granularity: Granularity) -> dt.datetime:
    moment = utc(moment).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if granularity == Granularity.DAY else moment


def _width(granularity: Granularity) -> dt.timedelta:
    return dt.timedelta(days=1) if granularity == Granularity.DAY else dt.timedelta(hours=1)


def bucket_starts(window: Window) -> list[dt.datetime]:
    """Starts of the UTC hours or days that overlap the window, in order."""
    first, width = _floor(window.start, window.granularity), _width(window.granularity)
    count = math.ceil((window.end - first) / width)
    return [first + width * index for index in range(count)]


def bucket_index(window: Window, moment: dt.datetime) -> int:
    """The index in bucket_starts(window) of the bucket holding `moment` (inside the window)."""
    first = _floor(window.start, window.granularity)
    return int((utc(moment) - first) // _width(window.granularity))


def hours_of(window: Window) -> Hours:
    """The whole UTC hours that overlap the window."""
    # The end's hour overlaps unless the end is its first instant (a fraction of a second
    # past the hour counts: truncating to whole seconds left that hour out).
    last = _floor(window.end, Granularity.HOUR)
    return Hours(hour_of(window.start), hour_of(last) + (last < utc(window.end)))


def step_metrics(totals: Iterable[StepTotals], graphs: Sequence[Graph]) -> list[StepMetrics]:
    """Per-step counts in graph order: every step of graphs[0], then counted steps of older ones."""
    rank: dict[str, int] = {}
    types: dict[str, str] = {}
    for graph in graphs:
        for key in graph.order():
            rank.setdefault(key, len(rank))
            types.setdefault(key, str(graph.step(key).type))
    current = graphs[0].order() if graphs else []
    result = {key: StepMetrics(key, types[key]) for key in current}
    for row in totals:
        if row.step_key not in result:
            result[row.step_key] = StepMetrics(row.step_key, types.get(row.step_key, row.step_type))
        _count(result[row.step_key], row)
    return sorted(result.values(), key=lambda item: rank.get(item.key, len(rank)))


def _count(item: StepMetrics, row: StepTotals) -> None:
    # Rows created skipped (a branch not taken, the steps after the contact's deletion) were
    # never reached; a step its run was at when the contact was deleted was.
    item.reached += row.steps - row.unreached
    item.completed += row.completed
    item.failed += row.failed
    item.skipped += (
        row.skipped_unsubscribed + row.skipped_branch_not_taken + row.skipped_contact_deleted
    )


def run_series(
    session: Session, automation_id: uuid.UUID, window: Window, *, finished: bool
) -> list[Bucket]:
    """The window's runs by status per bucket: created in it, or (`finished`) ended in it."""
    hours = hours_of(window)
    hourly = window.granularity == Granularity.HOUR
    rows = metrics_store.runs_by_hour(session, automation_id, hours, ended=finished, hourly=hourly)
    # bucket_index of each hour's start, in whole hours: buckets start on whole UTC hours.
    first = hour_of(_floor(window.start, window.granularity))
    width = 1 if hourly else 24
    return series(window, (((hour - first) // width, s, n) for hour, s, n in rows))


def _graphs(
    session: Session,
    automation_id: uuid.UUID,
    current_version_id: uuid.UUID | None,
    window: Window,
    counted: Iterable[str],
) -> list[Graph]:
    """The current graph, then older versions' (newest first) until the `counted` steps the
    current one lacks have their place and type: most windows need none, and an automation
    edited a thousand times does not have its thousand graphs read and parsed per request."""
    graphs = []
    if current_version_id is not None:
        current = automation_store.version_graph(session, current_version_id)
        graphs = [Graph.from_dict(current)] if current is not None else []
    missing = set(counted).difference(*(graph.order() for graph in graphs))
    if not missing:
        return graphs
    for data in metrics_store.older_graphs(session, automation_id, window.end):
        graph = Graph.from_dict(data)
        graphs.append(graph)
        missing.difference_update(graph.order())
        if not missing:
            break
    return graphs


def step_counts(
    session: Session, automation_id: uuid.UUID, window: Window, graph: Graph | None
) -> list[StepMetrics]:
    """Runs that reached, completed, failed and skipped each step of `graph` (and any other
    step the window's runs had), in graph order."""
    totals = metrics_store.step_totals(session, automation_id, hours_of(window))
    return step_metrics(totals, [graph] if graph is not None else [])


def window_metrics(session: Session, automation_id: uuid.UUID, window: Window) -> Metrics:
    """Numbers about the runs created in the window's hours, summed from the rollup."""
    automation = require_automation(session, automation_id)
    hours = hours_of(window)
    started = run_series(session, automation_id, window, finished=False)
    durations = metrics_store.duration_buckets(session, automation_id, hours)
    totals = metrics_store.step_totals(session, automation_id, hours)
    counted = (row.step_key for row in totals)
    graphs = _graphs(session, automation_id, automation.current_version_id, window, counted)
    return Metrics(
        automation_id=automation_id,
        window=window,
        runs=tally(started, durations),
        steps=step_metrics(totals, graphs),
        emails_sent=sum(t.completed for t in totals if t.step_type == StepType.SEND_EMAIL),
        emails_skipped_unsubscribed=sum(t.skipped_unsubscribed for t in totals),
        recovery=metrics_store.recovery_counts(session, automation_id, hours),
    )


def automation_metrics(
    session: Session,
    automation_id: uuid.UUID,
    *,
    start: str | None,
    end: str | None,
    granularity: str | None,
    now: dt.datetime,
) -> Metrics:
    """Numbers about the runs created in [start, end) (by default the last 7 days)."""
    window = parse_window(start, end, granularity, now=now)
    return window_metrics(session, automation_id, window)


@dataclass(frozen=True)
class Snapshot:
    """The runtime's totals for Prometheus."""

    runs_by_status: dict[str, int]
    emails_by_status: dict[str, int]
    queue_lag_seconds: float
    # step type -> {"steps": rows, "completed": n, "failed": n, "cancelled": n, "skipped_...": n}
    steps_by_type: dict[str, dict[str, int]]
    # p50/p90/p99 of the runs created in the current hour and the RECENT_HOURS - 1 before it
    recent_run_durations: dict[str, float | None]
    recent_timed_runs: int
    sweeper: SweeperHealth
    # cancel_runs, bulk_retry, bulk_replay -> how many are under way
    operations_under_way: dict[str, int]


def snapshot(session: Session, *, now: dt.datetime, sweeper_late_after: float) -> Snapshot:
    """Every run and step counted (from the rollup), the queue's lag, recent run durations,
    the sweeper's last tick."""
    oldest = health_store.oldest_due(session, now)
    recent = Hours(hour_of(now) - RECENT_HOURS + 1, hour_of(now) + 1)
    durations = metrics_store.duration_buckets(session, None, recent)
    return Snapshot(
        runs_by_status=metrics_store.runs_by_status(session),
        emails_by_status=health_store.emails_by_status(session),
        queue_lag_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        steps_by_type=metrics_store.steps_by_type(session),
        recent_run_durations=percentiles(durations),
        recent_timed_runs=sum(durations.values()),
        sweeper=sweeper_health(session, now=now, late_after=sweeper_late_after),
        operations_under_way=health_store.operations_under_way(session),
    )
