"""Metrics against hand counts: runs whose outcomes and times are known exactly, read through
engine.metrics (the API's and the dashboard's numbers) and the Prometheus snapshot."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from engine import metrics
from engine.db import transaction
from tests.engine.conftest import MakeDriver
from tests.engine.driver import T0, Driver

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
