"""An automation's numbers over a time window: runs by status, steps, durations, emails, series."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from engine.clock import parse_timestamp, utc
from engine.errors import InvalidInput
from engine.graph import Graph
from engine.reports import require_automation
from engine.store import automations as automation_store
from engine.store import metrics as metrics_store
from engine.store.metrics import RecoveryCounts, StepCount
from models.enums import RunStatus, SkipReason, StepStatus

DEFAULT_SPAN = dt.timedelta(days=7)
MAX_SPAN = dt.timedelta(days=366)
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
# Runs that ended by themselves; a cancelled run's length says how long until someone stopped it.
TIMED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.SKIPPED})
# A skipped row for these reasons is a step the run never arrived at.
NOT_REACHED = frozenset({SkipReason.BRANCH_NOT_TAKEN, SkipReason.CONTACT_DELETED})


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


def tally(started: list[Bucket], durations: Iterable[float]) -> RunTally:
    """Counts by status from the series of runs started; percentiles of the finished runs' times."""
    by_status = _zeros()
    for bucket in started:
        for status, count in bucket.by_status.items():
            by_status[status] = by_status.get(status, 0) + count
    ordered = sorted(durations)
    quantiles = {name: percentile(ordered, q) for name, q in PERCENTILES.items()}
    return RunTally(by_status, started, len(ordered), quantiles)


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
        step = Granularity(granularity or Granularity.DAY)
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


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile of sorted values, interpolated as percentile_cont; None if empty."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 6)


def step_metrics(counts: Iterable[StepCount], graphs: Sequence[Graph]) -> list[StepMetrics]:
    """Per-step counts in graph order: every step of graphs[0], then counted steps of older ones."""
    rank: dict[str, int] = {}
    types: dict[str, str] = {}
    for graph in graphs:
        for key in graph.order():
            rank.setdefault(key, len(rank))
            types.setdefault(key, str(graph.step(key).type))
    current = graphs[0].order() if graphs else []
    result = {key: StepMetrics(key, types[key]) for key in current}
    for row in counts:
        if row.step_key not in result:
            result[row.step_key] = StepMetrics(row.step_key, types.get(row.step_key, row.step_type))
        _count(result[row.step_key], row)
    return sorted(result.values(), key=lambda item: rank.get(item.key, len(rank)))


def _count(item: StepMetrics, row: StepCount) -> None:
    if row.status != StepStatus.SKIPPED or row.skip_reason not in NOT_REACHED:
        item.reached += row.count
    if row.status == StepStatus.COMPLETED:
        item.completed += row.count
    elif row.status == StepStatus.FAILED:
        item.failed += row.count
    elif row.status == StepStatus.SKIPPED:
        item.skipped += row.count


def _unsubscribed(counts: Iterable[StepCount]) -> int:
    return sum(
        row.count
        for row in counts
        if row.status == StepStatus.SKIPPED and row.skip_reason == SkipReason.UNSUBSCRIBED
    )


def run_series(
    session: Session, automation_id: uuid.UUID, window: Window, *, finished: bool
) -> list[Bucket]:
    """The window's runs by status per bucket, of their creation or (if finished) of their end."""
    rows = metrics_store.run_buckets(
        session,
        automation_id,
        window.start,
        window.end,
        origin=_floor(window.start, window.granularity),
        width=_width(window.granularity),
        finished=finished,
    )
    return series(window, rows)


def _graphs(
    session: Session, automation_id: uuid.UUID, current_version_id: uuid.UUID | None, window: Window
) -> list[Graph]:
    """The current graph, then those of older versions the window's runs were pinned to."""
    current = None
    if current_version_id is not None:
        current = automation_store.version_graph(session, current_version_id)
    older: list[dict[str, Any]] = []
    # With a single version, the runs were pinned to the current graph: no need to look.
    if current is None or metrics_store.version_count(session, automation_id) > 1:
        older = metrics_store.window_graphs(session, automation_id, window.start, window.end)
    return [Graph.from_dict(data) for data in [current, *older] if data is not None]


def window_metrics(session: Session, automation_id: uuid.UUID, window: Window) -> Metrics:
    """Numbers about the runs created in the window, aggregated by the database."""
    automation = require_automation(session, automation_id)
    since, until = window.start, window.end
    started = run_series(session, automation_id, window, finished=False)
    durations = metrics_store.run_durations(session, automation_id, since, until, statuses=TIMED)
    counts = metrics_store.step_counts(session, automation_id, since, until)
    graphs = _graphs(session, automation_id, automation.current_version_id, window)
    return Metrics(
        automation_id=automation_id,
        window=window,
        runs=tally(started, durations),
        steps=step_metrics(counts, graphs),
        emails_sent=metrics_store.emails_sent(session, automation_id, since, until),
        emails_skipped_unsubscribed=_unsubscribed(counts),
        recovery=metrics_store.recovery_counts(session, automation_id, since, until),
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
