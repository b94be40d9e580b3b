"""Pure parts of the reports: run-status filters, graph order, windows, buckets, percentiles."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.errors import InvalidInput
from engine.graph import validate_graph
from engine.metrics import (
    Bucket,
    Granularity,
    Window,
    bucket_index,
    bucket_starts,
    parse_window,
    series,
    step_metrics,
    tally,
)
from engine.percentiles import bucket_of
from engine.reports import in_graph_order, parse_run_statuses
from engine.store.metrics import StepTotals
from models.enums import RunStatus
from models.tables import RunStep

UTC = dt.UTC
NOW = dt.datetime(2026, 10, 8, 15, 30, tzinfo=UTC)


def test_run_status_filter() -> None:
    assert parse_run_statuses(None) is None
    assert parse_run_statuses("") is None
    assert parse_run_statuses(" , ") is None
    assert parse_run_statuses("running") == {RunStatus.RUNNING}
    assert parse_run_statuses("running, failed,skipped,") == {
        RunStatus.RUNNING,
        RunStatus.FAILED,
        RunStatus.SKIPPED,
    }
    with pytest.raises(InvalidInput, match="`paused`") as raised:
        parse_run_statuses("running,paused")
    assert raised.value.field == "status"


def test_in_graph_order_keeps_unknown_keys_last_in_their_order() -> None:
    rows = [RunStep(step_key=key) for key in ["start", "done", "zeta", "check", "alpha"]]
    ordered = in_graph_order(rows, ["start", "check", "pause", "done"])
    assert [row.step_key for row in ordered] == ["start", "check", "done", "zeta", "alpha"]


def test_parse_window_defaults_and_forms() -> None:
    default = parse_window(None, None, None, now=NOW)
    assert default == Window(NOW - dt.timedelta(days=7), NOW, Granularity.DAY)
    only_start = parse_window("2026-10-01", None, "hour", now=NOW)
    assert only_start == Window(dt.datetime(2026, 10, 1, tzinfo=UTC), NOW, Granularity.HOUR)
    only_end = parse_window(None, "2026-10-02T00:00:00Z", None, now=NOW)
    assert only_end.start == dt.datetime(2026, 9, 25, tzinfo=UTC)
    wire_form = parse_window(
        "2026-10-01 12:00:00.000000+00", "2026-10-01T16:00:00+02:00", None, now=NOW
    )
    assert wire_form.start == dt.datetime(2026, 10, 1, 12, tzinfo=UTC)
    assert wire_form.end == dt.datetime(2026, 10, 1, 14, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "granularity", "field"),
    [
        ("soon", None, None, "start"),
        (None, "2026-02-30", None, "end"),
        ("2026-10-02", "2026-10-01", None, "end"),
        ("2026-10-01", "2026-10-01", None, "end"),
        ("2025-01-01", "2026-01-02T00:00:01Z", None, "end"),
        (None, None, "minute", "granularity"),
    ],
)
def test_parse_window_refusals(
    start: str | None, end: str | None, granularity: str | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_window(start, end, granularity, now=NOW)
    assert raised.value.field == field


def test_a_window_of_exactly_366_days_is_allowed() -> None:
    window = parse_window("2025-01-01", "2026-01-02", None, now=NOW)
    assert len(bucket_starts(window)) == 366


def test_buckets_are_aligned_utc_hours_and_days() -> None:
    start = dt.datetime(2026, 10, 1, 22, 30, tzinfo=UTC)
    end = dt.datetime(2026, 10, 2, 1, 0, tzinfo=UTC)
    hours = Window(start, end, Granularity.HOUR)
    assert bucket_starts(hours) == [
        dt.datetime(2026, 10, 1, 22, tzinfo=UTC),
        dt.datetime(2026, 10, 1, 23, tzinfo=UTC),
        dt.datetime(2026, 10, 2, 0, tzinfo=UTC),
    ]
    assert bucket_index(hours, start) == 0
    assert bucket_index(hours, dt.datetime(2026, 10, 2, 0, 59, 59, tzinfo=UTC)) == 2
    days = Window(start, end, Granularity.DAY)
    assert bucket_starts(days) == [
        dt.datetime(2026, 10, 1, tzinfo=UTC),
        dt.datetime(2026, 10, 2, tzinfo=UTC),
    ]
    assert bucket_index(days, dt.datetime(2026, 10, 2, 0, 30, tzinfo=UTC)) == 1
    # A time in another zone lands in its UTC bucket.
    paris = dt.timezone(dt.timedelta(hours=2))
    assert bucket_index(days, dt.datetime(2026, 10, 2, 1, 0, tzinfo=paris)) == 0


def test_series_covers_the_window_and_tally_sums_it() -> None:
    start = dt.datetime(2026, 10, 1, tzinfo=UTC)
    window = Window(start, start + dt.timedelta(days=2), Granularity.DAY)
    rows = [(0, "completed", 1), (0, "failed", 1), (1, "skipped", 1), (1, "cancelled", 1)]
    rows += [(1, "running", 1), (2, "completed", 9), (-1, "completed", 9)]  # outside: ignored
    started = series(window, rows)
    assert [b.start for b in started] == [start, start + dt.timedelta(days=1)]
    assert [b.runs_started for b in started] == [2, 3]
    assert started[1].by_status["cancelled"] == 1
    durations = {bucket_of(600.0): 1, bucket_of(60.0): 1, bucket_of(1200.0): 1}
    result = tally(started, durations)
    assert result.by_status == {
        "running": 1,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
        "skipped": 1,
    }
    assert result.finished_runs == 3
    # Nearest rank, within a bucket's 4.4 %: the 2nd of 3 for p50, the 3rd for p90 and p99.
    assert result.percentiles["p50"] == pytest.approx(600.0, rel=0.045)
    assert result.percentiles["p90"] == pytest.approx(1200.0, rel=0.045)
    assert result.percentiles["p99"] == pytest.approx(1200.0, rel=0.045)
    empty = tally([Bucket(start)], {})
    assert empty.finished_runs == 0
    assert empty.percentiles == {"p50": None, "p90": None, "p99": None}
    assert sum(empty.by_status.values()) == 0


def test_step_metrics_follow_graph_order_then_older_versions() -> None:
    trigger = {"key": "start", "type": "trigger", "config": {"event_name": "e"}}

    def graph(*keys: str):  # type: ignore[no-untyped-def]
        steps = [trigger] + [
            {"key": k, "type": "contact_update", "config": {"first_name": k}} for k in keys
        ]
        connections = [{"from": a, "to": b} for a, b in zip(["start", *keys], keys, strict=False)]
        return validate_graph(steps, connections)

    current, older = graph("b", "new"), graph("b", "gone", "old")
    # key, type, steps, completed, failed, cancelled, skipped: unsub., branch, deleted; unreached
    counts = [
        StepTotals("start", "trigger", 3, 3, 0, 0, 0, 0, 0, 0),
        StepTotals("old", "contact_update", 1, 1, 0, 0, 0, 0, 0, 0),
        StepTotals("gone", "contact_update", 1, 0, 1, 0, 0, 0, 0, 0),
        StepTotals("b", "contact_update", 7, 2, 0, 0, 1, 4, 0, 4),
    ]
    result = step_metrics(counts, [current, older])
    assert [(m.key, m.reached, m.completed, m.failed, m.skipped) for m in result] == [
        ("start", 3, 3, 0, 0),
        ("b", 3, 2, 0, 5),
        ("new", 0, 0, 0, 0),
        ("gone", 1, 0, 1, 0),
        ("old", 1, 1, 0, 0),
    ]
    assert step_metrics([], []) == []
