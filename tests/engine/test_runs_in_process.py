"""The engine's paths in one process: a long automation in milliseconds, inline steps, a step
that raises, a lost message, a retry after the fix."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from engine import content
from engine.bulk import parse_request, start_bulk
from engine.db import transaction
from engine.recovery import RunNotRetryable, retry_run
from models.enums import BulkAction
from tests.engine.conftest import MakeDriver
from tests.engine.driver import Driver

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def email_step(key: str, template_id: str) -> dict[str, Any]:
    variables = {"NAME": {"var": "contact.first_name"}}
    config = {"template": {"id": template_id, "variables": variables}}
    return {"key": key, "type": "send_email", "config": config}


def chain(*keys: str) -> list[dict[str, str]]:
    return [{"from": a, "to": b} for a, b in itertools.pairwise(keys)]


def test_a_thirty_day_journey_runs_in_process(driver: Driver) -> None:
    template = driver.template()
    steps = [
        TRIGGER,
        email_step("welcome", template),
        {"key": "wait", "type": "delay", "config": {"duration": "30 days"}},
        {"key": "tag", "type": "contact_update", "config": {"properties": {"month": 1}}},
        email_step("month", template),
    ]
    driver.automation(steps, chain("start", "welcome", "wait", "tag", "month"))
    (run_id,) = driver.send("user.created", "ada@example.test").run_ids
    driver.settle()

    assert driver.run(run_id).status == "completed"
    assert [email.to for email in driver.sent] == [("ada@example.test",)] * 2
    assert driver.clock.now() - driver.steps(run_id)["welcome"].completed_at >= dt.timedelta(
        days=30
    )


@pytest.mark.parametrize(("inline", "messages"), [(8, 1), (2, 2), (0, 4)])
def test_instant_steps_run_inline_within_the_bound(
    make_driver: MakeDriver, inline: int, messages: int
) -> None:
    driver = make_driver(inline_steps=inline)
    tags = [
        {"key": f"t{n}", "type": "contact_update", "config": {"properties": {f"p{n}": n}}}
        for n in range(4)
    ]
    driver.automation([TRIGGER, *tags], chain("start", "t0", "t1", "t2", "t3"))
    (run_id,) = driver.send("user.created", "inline@example.test").run_ids
    driver.settle()
    assert driver.run(run_id).status == "completed"
    # Each message executes its step and up to `inline` more.
    assert driver.executions == messages
    assert all(step.attempt <= 1 for step in driver.steps(run_id).values())


def test_a_step_that_raises_ends_failed_after_its_attempts(driver: Driver) -> None:
    def broken(name: str) -> None:
        if name == "contact_update.handler":
            raise RuntimeError("a bug")

    driver.rt.checkpoint = broken
    steps = [TRIGGER, {"key": "tag", "type": "contact_update", "config": {"last_name": "X"}}]
    driver.automation(steps, chain("start", "tag"))
    (run_id,) = driver.send("user.created", "bob@example.test").run_ids
    driver.settle()

    assert driver.run(run_id).status == "failed"
    step = driver.steps(run_id)["tag"]
    assert step.error["code"] == "internal_error" and step.failed_attempts == 3


def test_a_lost_message_is_found_by_the_sweeper(driver: Driver) -> None:
    steps = [TRIGGER, {"key": "tag", "type": "contact_update", "config": {"last_name": "X"}}]
    driver.automation(steps, chain("start", "tag"))
    (run_id,) = driver.send("user.created", "cy@example.test").run_ids
    driver.queue.clear()  # the broker lost the message
    driver.settle()
    assert driver.run(run_id).status == "completed"


def test_failed_runs_are_retried_in_bulk_once_the_template_is_published(driver: Driver) -> None:
    template = driver.template(published=False)
    automation_id = driver.automation(
        [TRIGGER, email_step("hello", template)], chain("start", "hello")
    )
    runs = [driver.send("user.created", f"r{n}@example.test").run_ids[0] for n in range(3)]
    driver.settle()
    assert {driver.run(run_id).status for run_id in runs} == {"failed"}

    with transaction(driver.rt.sessions) as session:
        content.publish_template(session, template, now=driver.clock.now())
    request = parse_request(
        automation_id, BulkAction.RETRY, {"error_code": "template_not_published"}
    )
    with transaction(driver.rt.sessions) as session:
        started = start_bulk(session, request, now=driver.clock.now())
    driver.enqueue(started.dispatches)
    driver.settle()
    assert {driver.run(run_id).status for run_id in runs} == {"completed"}
    assert len(driver.sent) == 3

    # A run retried again, with nothing left failed: refused, and nothing sent twice.
    with pytest.raises(RunNotRetryable, match="completed"):
        retry_run(driver.rt, automation_id, runs[0])
    assert len(driver.sent) == 3
