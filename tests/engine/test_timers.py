"""Timers meeting messages that come at the wrong time."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass

from engine.db import transaction
from engine.dispatch import Message, commit_then_dispatch
from engine.executor import execute_step
from engine.ingest import EventRequest, Ingested, ingest_events
from tests.engine.driver import Driver

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
PAUSE = {"key": "pause", "type": "delay", "config": {"duration": "1 minute"}}
TAG = {"key": "tag", "type": "contact_update", "config": {"first_name": "Later"}}
SECOND = dt.timedelta(seconds=1)


def chain(*keys: str) -> list[dict[str, str]]:
    return [{"from": a, "to": b} for a, b in itertools.pairwise(keys)]


def test_a_timer_message_that_comes_early_is_sent_again_for_its_due_time(driver: Driver) -> None:
    """A countdown delivered before the step's due time (a worker host whose clock is ahead
    fires its ETA early) runs nothing, and the next tick sends the step again for its due
    time, rather than the step waiting to look lost (`stale_after_seconds` past due)."""
    driver.automation([TRIGGER, PAUSE, TAG], chain("start", "pause", "tag"))
    (run_id,) = driver.send("user.created", "early@example.test").run_ids
    driver.queue.clear()
    (timer,) = execute_step(driver.rt, run_id, "pause")
    assert timer.countdown == 60

    driver.clock.advance(50 * SECOND)
    assert execute_step(driver.rt, run_id, "pause") == [], "ran 10 s before its due time"
    assert driver.steps(run_id)["pause"].status == "waiting"

    driver.tick()
    (again,) = driver.dispatched()
    assert (again.run_id, again.step_key, again.countdown) == (run_id, "pause", 10)
    driver.settle()
    steps = driver.steps(run_id)
    assert steps["pause"].completed_at == steps["pause"].due_at
    assert driver.run(run_id).status == "completed"


VERIFIED = {
    "key": "verified",
    "type": "wait_for_event",
    "config": {"event_name": "email.verified", "timeout": "1 day"},
}


def send_together(driver: Driver, *events: str) -> list[uuid.UUID]:
    """Events for one contact written in one transaction, in this order (a batch, or single
    events the API's group commit wrote together)."""
    requests = [EventRequest(event, email="together@example.test") for event in events]
    batch = commit_then_dispatch(
        transaction(driver.rt.sessions),
        driver,
        lambda session: Batch(ingest_events(session, driver.rt, requests, now=driver.clock.now())),
    )
    return [run_id for ingested in batch.results for run_id in ingested.run_ids]


@dataclass(frozen=True)
class Batch:
    results: list[Ingested]

    @property
    def dispatches(self) -> list[Message]:
        return [d for ingested in self.results for d in ingested.dispatches]


def test_an_event_written_with_the_trigger_but_before_it_does_not_end_the_wait(
    driver: Driver,
) -> None:
    driver.automation([TRIGGER, VERIFIED], chain("start", "verified"))
    (run_id,) = send_together(driver, "email.verified", "user.created")
    driver.settle(until=driver.clock.now() + dt.timedelta(hours=1))
    assert driver.steps(run_id)["verified"].status == "waiting", (
        "the wait took an event sent before the run started"
    )


def test_an_event_written_with_the_trigger_and_after_it_ends_the_wait(driver: Driver) -> None:
    driver.automation([TRIGGER, VERIFIED], chain("start", "verified"))
    (run_id,) = send_together(driver, "user.created", "email.verified")
    driver.settle(until=driver.clock.now() + dt.timedelta(hours=1))
    wait = driver.steps(run_id)["verified"]
    assert (wait.status, wait.branch) == ("completed", "event_received")
