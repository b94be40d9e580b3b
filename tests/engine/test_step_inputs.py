"""Inputs a run meets at run time, which no check at the door could see: each ends the step at
once, with a result or an error naming the value, never an internal error retried for minutes."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from sqlalchemy import select

from engine.db import transaction
from models.tables import Contact
from tests.engine.driver import Driver


def chain(*keys: str) -> list[dict[str, str]]:
    return [{"from": a, "to": b} for a, b in itertools.pairwise(keys)]


def trigger(event: str) -> dict[str, Any]:
    return {"key": "start", "type": "trigger", "config": {"event_name": event}}


def contact(driver: Driver, email: str) -> Contact:
    with transaction(driver.rt.sessions) as session:
        found = session.scalar(select(Contact).where(Contact.email == email))
        assert found is not None
        return found


def test_a_date_beyond_the_calendar_in_utc_is_compared_not_raised(driver: Driver) -> None:
    rule = {"field": "event.trial_ends", "operator": "lt", "value": "2030-01-01"}
    steps = [
        trigger("trial.started"),
        {"key": "check", "type": "condition", "config": {"rule": rule}},
        {"key": "soon", "type": "contact_update", "config": {"last_name": "Soon"}},
    ]
    connections = [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "soon", "type": "condition_met"},
    ]
    driver.automation(steps, connections)
    payload = {"trial_ends": "9999-12-31T20:00:00-08:00"}  # year 10000 in UTC
    (run_id,) = driver.send("trial.started", "late@example.test", payload).run_ids
    driver.settle()

    check = driver.steps(run_id)["check"]
    assert (check.status, check.branch, check.attempt) == ("completed", "condition_not_met", 1)
    assert driver.run(run_id).status == "completed"


def test_a_wait_for_the_trigger_s_own_event_waits_for_the_next_one(driver: Driver) -> None:
    steps = [
        trigger("order.placed"),
        {
            "key": "next",
            "type": "wait_for_event",
            "config": {"event_name": "order.placed", "timeout": "1 day"},
        },
        {"key": "repeat", "type": "contact_update", "config": {"properties": {"repeat": True}}},
    ]
    connections = [
        {"from": "start", "to": "next"},
        {"from": "next", "to": "repeat", "type": "event_received"},
    ]
    driver.automation(steps, connections)
    first = driver.send("order.placed", "buyer@example.test", {"order": 1})
    driver.settle(until=driver.clock.now())
    (run_id,) = first.run_ids
    assert driver.steps(run_id)["next"].status == "waiting"

    driver.clock.advance(dt.timedelta(minutes=5))
    second = driver.send("order.placed", "buyer@example.test", {"order": 2})
    driver.settle(until=driver.clock.now())

    waited = driver.steps(run_id)["next"]
    assert waited.status == "completed" and waited.branch == "event_received"
    assert waited.output["event_id"] == str(second.event_id)
    assert driver.run(run_id).status == "completed"
    # The second order started a run of its own, which waits for a third.
    (later,) = second.run_ids
    assert driver.steps(later)["next"].status == "waiting"


def test_one_event_resumes_one_of_two_waits_for_it_in_a_row(driver: Driver) -> None:
    def wait(key: str) -> dict[str, Any]:
        config = {"event_name": "user.login", "timeout": "1 day"}
        return {"key": key, "type": "wait_for_event", "config": config}

    steps = [
        trigger("user.created"),
        wait("first_login"),
        wait("second_login"),
        {"key": "regular", "type": "contact_update", "config": {"properties": {"regular": True}}},
    ]
    connections = [
        {"from": "start", "to": "first_login"},
        {"from": "first_login", "to": "second_login", "type": "event_received"},
        {"from": "second_login", "to": "regular", "type": "event_received"},
    ]
    driver.automation(steps, connections)
    (run_id,) = driver.send("user.created", "twice@example.test").run_ids
    driver.settle(until=driver.clock.now())

    driver.clock.advance(dt.timedelta(minutes=5))
    first = driver.send("user.login", "twice@example.test", {"n": 1})
    driver.settle(until=driver.clock.now())
    # The login that ended the first wait made the second: it is not the one the second awaits.
    assert driver.steps(run_id)["first_login"].output["event_id"] == str(first.event_id)
    assert driver.steps(run_id)["second_login"].status == "waiting"

    driver.clock.advance(dt.timedelta(minutes=5))
    second = driver.send("user.login", "twice@example.test", {"n": 2})
    driver.settle(until=driver.clock.now())
    waited = driver.steps(run_id)["second_login"]
    assert (waited.status, waited.output["event_id"]) == ("completed", str(second.event_id))
    assert driver.run(run_id).status == "completed"


def test_a_contact_update_is_held_to_the_contact_endpoints_rules(driver: Driver) -> None:
    steps = [
        trigger("profile.changed"),
        {
            "key": "copy",
            "type": "contact_update",
            "config": {
                "last_name": {"var": "event.name"},
                "properties": {"address": {"var": "event.address"}},
            },
        },
    ]
    driver.automation(steps, chain("start", "copy"))
    cases = {
        "long@example.test": ({"name": "x" * 256, "address": "1 Main St"}, "at most 255"),
        "nested@example.test": (
            {"name": "Lovelace", "address": {"street": "Main"}},
            "must be a string, number, boolean or null",
        ),
    }
    for email, (payload, words) in cases.items():
        (run_id,) = driver.send("profile.changed", email, payload).run_ids
        driver.settle()
        step = driver.steps(run_id)["copy"]
        assert (step.status, step.attempt) == ("failed", 1), email
        assert step.error["code"] == "invalid_contact_value"
        assert (
            words in step.error["message"] and "the contact is unchanged" in step.error["message"]
        )
        assert driver.run(run_id).status == "failed"
        assert contact(driver, email).last_name is None  # nothing of the step was written

    (run_id,) = driver.send("profile.changed", "object@example.test", {"name": {"a": 1}}).run_ids
    driver.settle()
    step = driver.steps(run_id)["copy"]
    assert (step.status, step.error["code"]) == ("failed", "type_mismatch")
    assert contact(driver, "object@example.test").last_name is None

    fine = {"name": "Lovelace", "address": "1 Main St"}
    (run_id,) = driver.send("profile.changed", "fine@example.test", fine).run_ids
    driver.settle()
    assert driver.run(run_id).status == "completed"
    stored = contact(driver, "fine@example.test")
    assert (stored.last_name, stored.properties) == ("Lovelace", {"address": "1 Main St"})


def test_a_name_from_a_number_or_boolean_reads_as_an_email_shows_it(driver: Driver) -> None:
    steps = [
        trigger("profile.changed"),
        {
            "key": "copy",
            "type": "contact_update",
            "config": {"first_name": {"var": "event.vip"}, "last_name": {"var": "event.tier"}},
        },
    ]
    driver.automation(steps, chain("start", "copy"))
    (run_id,) = driver.send("profile.changed", "vip@example.test", {"vip": True, "tier": 2}).run_ids
    driver.settle()

    assert driver.run(run_id).status == "completed"
    stored = contact(driver, "vip@example.test")
    assert (stored.first_name, stored.last_name) == ("true", "2")  # not Python's "True"


def test_a_sender_longer_than_its_column_fails_the_send_at_once(
    driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step saved before `from` was held to 320 characters: PostgreSQL refuses the outbox
    row, which failed every attempt as internal_error. It fails at once, naming the cause."""
    template = driver.template()
    sender = "N" * 200 + " <hi@acme.test>"
    config = {"template": {"id": template}, "from": sender}
    steps = [trigger("user.created"), {"key": "mail", "type": "send_email", "config": config}]
    driver.automation(steps, chain("start", "mail"))
    monkeypatch.setattr("engine.steps.email_message.MAX_SENDER", 100)  # as if saved longer
    (run_id,) = driver.send("user.created", "long.from@example.test").run_ids
    driver.settle()

    step = driver.steps(run_id)["mail"]
    assert (step.status, step.attempt, step.error["code"]) == ("failed", 1, "invalid_address")
    assert "shorten the step's `from`" in step.error["message"]
    assert driver.sent == []
