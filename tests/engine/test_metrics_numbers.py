"""Metrics against hand counts: runs whose outcomes and times are known exactly, read through
engine.metrics (the API's and the dashboard's numbers) and the Prometheus snapshot."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import event

from engine import lifecycle, metrics
from engine.contacts import delete_contact
from engine.db import transaction
from engine.percentiles import bucket_of, middle
from tests.engine.conftest import MakeDriver
from tests.engine.driver import T0, Driver

HOUR = dt.timedelta(hours=1)
ZERO = {"running": 0, "completed": 0, "failed": 0, "cancelled": 0, "skipped": 0}
TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def delayed(driver: Driver, duration: str) -> uuid.UUID:
    """An automation whose runs wait `duration`, then update the contact."""
    return driver.automation(
        [
            TRIGGER,
            {"key": "pause", "type": "delay", "config": {"duration": duration}},
            {"key": "after", "type": "contact_update", "config": {"first_name": "A"}},
        ],
        [{"from": "start", "to": "pause"}, {"from": "pause", "to": "after"}],
    )


def window(driver: Driver, automation_id: uuid.UUID, **params: Any) -> metrics.Metrics:
    with transaction(driver.rt.sessions) as session:
        return metrics.automation_metrics(
            session,
            automation_id,
            start=params.get("start"),
            end=params.get("end"),
            granularity=params.get("granularity"),
            now=driver.clock.now(),
        )


def test_a_window_ending_a_fraction_of_a_second_into_an_hour_counts_that_hour(
    make_driver: MakeDriver,
) -> None:
    driver = make_driver()
    driver.clock.advance(dt.timedelta(minutes=50))
    automation_id = delayed(driver, "30 minutes")
    driver.send("user.created", "a@x.test")
    driver.settle()
    # The run was created at 12:50; [12:00, 12:00:00.5) overlaps the hour from 12:00.
    found = window(
        driver,
        automation_id,
        start="2026-10-01T12:00:00Z",
        end="2026-10-01T12:00:00.5Z",
        granularity="hour",
    )
    assert found.runs.by_status["completed"] == 1
    assert [(b.start, b.runs_started) for b in found.runs.series] == [(T0, 1)]
    assert found.runs.finished_runs == 1
    assert [(s.key, s.reached) for s in found.steps] == [("start", 1), ("pause", 1), ("after", 1)]


WAIT_THEN_BRANCH = (
    [
        TRIGGER,
        {
            "key": "wait",
            "type": "wait_for_event",
            "config": {"event_name": "go", "timeout": "1 day"},
        },
        {
            "key": "check",
            "type": "condition",
            "config": {"rule": {"field": "event.kind", "operator": "eq", "value": "x"}},
        },
        {"key": "yes", "type": "contact_update", "config": {"first_name": "Y"}},
        {"key": "no", "type": "contact_update", "config": {"first_name": "N"}},
    ],
    [
        {"from": "start", "to": "wait"},
        {"from": "wait", "to": "check", "type": "event_received"},
        {"from": "check", "to": "yes", "type": "condition_met"},
        {"from": "check", "to": "no", "type": "condition_not_met"},
    ],
)


def test_every_figure_of_a_known_set_of_runs(make_driver: MakeDriver) -> None:
    driver = make_driver()
    driver.clock.advance(dt.timedelta(minutes=55))  # the runs end in the next hour
    automation_id = driver.automation(*WAIT_THEN_BRANCH)
    # Ten runs that take k minutes (k = 1..10), odd k down `yes`, even k down `no`; one that
    # fails at its condition after 10 minutes; one cancelled while it waits.
    for k in range(1, 11):
        driver.send("user.created", f"u{k}@x.test", {"kind": "x" if k % 2 else "y"})
    driver.send("user.created", "bad@x.test", {})
    cancelled = driver.send("user.created", "stop@x.test", {"kind": "x"}).run_ids[0]
    driver.settle(until=driver.clock.now())
    for k in range(1, 11):
        driver.clock.advance(dt.timedelta(minutes=1))
        driver.send("go", f"u{k}@x.test")
        if k == 10:
            driver.send("go", "bad@x.test")
        driver.settle(until=driver.clock.now())
    with transaction(driver.rt.sessions) as session:
        lifecycle.cancel_run(session, automation_id, cancelled, now=driver.clock.now())

    found = window(
        driver,
        automation_id,
        start="2026-10-01T12:00:00Z",
        end="2026-10-01T14:00:00Z",
        granularity="hour",
    )
    assert found.runs.by_status == {**ZERO, "completed": 10, "failed": 1, "cancelled": 1}
    assert [(b.start, b.runs_started) for b in found.runs.series] == [
        (T0, 12),
        (T0 + HOUR, 0),
    ]
    # Nearest rank of 11 timed durations (60, 120, ..., 600, 600 s), each as its bucket's
    # middle: p50 is the 6th, p90 the 10th, p99 the 11th. The cancelled run is left out.
    assert found.runs.finished_runs == 11
    assert found.runs.percentiles == {
        "p50": middle(bucket_of(360)),
        "p90": middle(bucket_of(600)),
        "p99": middle(bucket_of(600)),
    }
    counts = {s.key: (s.type, s.reached, s.completed, s.failed, s.skipped) for s in found.steps}
    assert counts == {
        "start": ("trigger", 12, 12, 0, 0),
        "wait": ("wait_for_event", 12, 11, 0, 0),
        "check": ("condition", 11, 10, 1, 0),
        "yes": ("contact_update", 5, 5, 0, 5),
        "no": ("contact_update", 5, 5, 0, 5),
    }
    assert (found.emails_sent, found.emails_skipped_unsubscribed) == (0, 0)
    # Runs that ended, by the hour they ended in: 12:56 .. 13:05, and the cancelled one.
    with transaction(driver.rt.sessions) as session:
        ended = metrics.run_series(session, automation_id, found.window, finished=True)
    assert [{s: n for s, n in b.by_status.items() if n} for b in ended] == [
        {"completed": 4},
        {"completed": 6, "failed": 1, "cancelled": 1},
    ]
    # The same runs by the day, from a window given at +02:00.
    by_day = window(
        driver,
        automation_id,
        start="2026-10-01T02:00:00+02:00",
        end="2026-10-02T02:00:00+02:00",
    )
    assert by_day.runs.by_status == found.runs.by_status
    assert by_day.runs.percentiles == found.runs.percentiles
    assert [(b.start, b.runs_started) for b in by_day.runs.series] == [(T0.replace(hour=0), 12)]

    with transaction(driver.rt.sessions) as session:
        totals = metrics.snapshot(session, now=driver.clock.now(), sweeper_late_after=60)
    assert totals.runs_by_status == found.runs.by_status
    assert totals.recent_run_durations == found.runs.percentiles
    assert totals.steps_by_type["contact_update"] == {
        "steps": 20,
        "completed": 10,
        "failed": 0,
        "cancelled": 0,
        "skipped_unsubscribed": 0,
        "skipped_branch_not_taken": 10,
        "skipped_contact_deleted": 0,
        "unreached": 10,
    }
    assert totals.steps_by_type["wait_for_event"]["cancelled"] == 1


def test_prometheus_durations_cover_the_current_hour_and_the_23_before(
    make_driver: MakeDriver,
) -> None:
    driver = make_driver()
    delayed(driver, "30 minutes")
    driver.send("user.created", "early@x.test")  # created at 12:00, takes 30 minutes
    driver.settle()
    driver.clock.advance(HOUR)
    delayed(driver, "1 hour")
    driver.send("user.created", "late@x.test")  # two runs at 13:30: 30 minutes, an hour
    driver.settle()
    # At 12:10 the next day, the current hour and the 23 before it start at 13:00 today.
    driver.clock.advance(dt.timedelta(hours=21, minutes=40))
    assert driver.clock.now() == T0 + dt.timedelta(days=1, minutes=10)
    with transaction(driver.rt.sessions) as session:
        totals = metrics.snapshot(session, now=driver.clock.now(), sweeper_late_after=60)
    assert totals.recent_timed_runs == 2
    assert totals.recent_run_durations == {
        "p50": middle(bucket_of(1800)),
        "p90": middle(bucket_of(3600)),
        "p99": middle(bucket_of(3600)),
    }
    assert totals.runs_by_status["completed"] == 3


def test_a_step_its_run_was_at_when_the_contact_was_deleted_was_reached(
    make_driver: MakeDriver,
) -> None:
    driver = make_driver()
    automation_id = driver.automation(*WAIT_THEN_BRANCH)
    gone = driver.send("user.created", "gone@x.test", {"kind": "x"}).run_ids[0]
    driver.send("user.created", "stays@x.test", {"kind": "x"})
    driver.settle(until=driver.clock.now())
    driver.clock.advance(dt.timedelta(minutes=5))
    with transaction(driver.rt.sessions) as session:
        delete_contact(session, "gone@x.test", now=driver.clock.now())
    driver.settle(until=driver.clock.now())
    assert driver.steps(gone)["wait"].skip_reason == "contact_deleted"

    found = window(driver, automation_id, start="2026-10-01T12:00:00Z", end="2026-10-01T13:00:00Z")
    counts = {s.key: (s.reached, s.completed, s.failed, s.skipped) for s in found.steps}
    # Both runs waited at `wait`; the deleted contact's run ended there, skipping the rest.
    assert counts == {
        "start": (2, 2, 0, 0),
        "wait": (2, 0, 0, 1),
        "check": (0, 0, 0, 1),
        "yes": (0, 0, 0, 1),
        "no": (0, 0, 0, 1),
    }


def test_older_versions_graphs_are_read_only_for_steps_the_current_one_lacks(
    make_driver: MakeDriver,
) -> None:
    """An automation edited many times: its metrics read the current graph alone while every
    counted step is in it, then older graphs only until a step it lacks has its place."""
    driver = make_driver()
    touch = {"key": "touch", "type": "contact_update", "config": {"first_name": "A"}}
    automation_id = driver.automation([TRIGGER, touch], [{"from": "start", "to": "touch"}])
    driver.send("user.created", "first@x.test")
    driver.settle()
    for n in range(5):  # five more versions, each with the same two steps
        renamed = {**touch, "config": {"first_name": f"V{n}"}}
        edit(driver, automation_id, [TRIGGER, renamed], [{"from": "start", "to": "touch"}])
    versions_read = graph_reads(driver)
    span = {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z"}
    assert [s.key for s in window(driver, automation_id, **span).steps] == ["start", "touch"]
    assert versions_read == [1]  # the current version's graph, no other

    other = {"key": "other", "type": "contact_update", "config": {"last_name": "B"}}
    edit(driver, automation_id, [TRIGGER, other], [{"from": "start", "to": "other"}])
    driver.send("user.created", "second@x.test")
    driver.settle()
    versions_read.clear()
    steps = window(driver, automation_id, **span).steps
    assert [(s.key, s.type, s.completed) for s in steps] == [
        ("start", "trigger", 2),
        ("other", "contact_update", 1),
        ("touch", "contact_update", 1),
    ]
    assert versions_read == [1, 1]  # the current graph, then the older ones, in one read


def edit(
    driver: Driver, automation_id: uuid.UUID, steps: list[Any], connections: list[Any]
) -> None:
    """A new version of the automation's graph (disabled for the edit, enabled again)."""
    with transaction(driver.rt.sessions) as session:
        changes = {"status": "disabled", "steps": steps, "connections": connections}
        lifecycle.update_automation(session, automation_id, changes, now=driver.clock.now())
        lifecycle.update_automation(
            session, automation_id, {"status": "enabled"}, now=driver.clock.now()
        )


def graph_reads(driver: Driver) -> list[int]:
    """One entry per statement that reads automation_versions' graphs, from now on."""
    reads: list[int] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "automation_versions.graph" in statement:
            reads.append(1)

    event.listen(driver.rt.sessions.kw["bind"], "before_cursor_execute", seen)
    return reads
