"""Timers meeting messages that come at the wrong time."""

from __future__ import annotations

import datetime as dt
import itertools

from engine.executor import execute_step
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
