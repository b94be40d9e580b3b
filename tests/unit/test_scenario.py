"""Simulation requests: their shape checked, each problem named by its field."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from engine.durations import format_duration, format_offset
from engine.errors import InvalidInput
from engine.scenario import parse_later_event, parse_scenario, within

GRAPH = {
    "steps": [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {"key": "pause", "type": "delay", "config": {"duration": "1 day"}},
    ],
    "connections": [{"from": "start", "to": "pause"}],
}
BASE: dict[str, Any] = {"automation": GRAPH, "contact": {"email": "ada@example.test"}}


def test_a_full_request() -> None:
    scenario = parse_scenario(
        {
            **BASE,
            "event": {"name": "user.created", "payload": {"plan": "pro"}},
            "events": [
                {"name": "b", "after": "2 days"},
                {"name": "a", "after": "1 hour", "payload": {"x": 1}},
                {"name": "c", "after": "2 days"},
            ],
            "until": "40 days",
        }
    )
    assert scenario.graph is not None and scenario.graph.event_name == "user.created"
    assert scenario.payload == {"plan": "pro"}
    assert [(e.name, e.index) for e in scenario.events] == [("a", 1), ("b", 0), ("c", 2)]
    assert scenario.until == dt.timedelta(days=40)


def test_a_stored_automation_and_a_stored_contact() -> None:
    scenario = parse_scenario(
        {
            "automation_id": "7f0c1a3e-8f7a-4c55-9a43-2f9f0c1f7b21",
            "contact": {"id": "0b1c1a3e-8f7a-4c55-9a43-2f9f0c1f7b21", "unsubscribed": True},
        }
    )
    assert scenario.graph is None and scenario.automation_id is not None
    assert scenario.contact.stored_id is not None
    assert scenario.contact.fields == {"unsubscribed": True}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"automation_id": "7f0c1a3e-8f7a-4c55-9a43-2f9f0c1f7b21"}, "automation"),
        ({"automation": None}, "automation"),
        ({"automation": {"steps": GRAPH["steps"], "connections": [], "x": 1}}, "automation.x"),
        ({"contact": None}, "contact"),
        ({"contact": {"email": "a@b.test", "properties": []}}, "contact.properties"),
        ({"contact": {"id": 3}}, "contact.id"),
        ({"event": {"payload": []}}, "event.payload"),
        ({"event": {"name": ""}}, "event.name"),
        ({"events": [{"name": "x", "after": "400 days"}]}, "events[0].after"),
        ({"events": [{"name": "x", "after": "0 minutes"}]}, "events[0].after"),
        ({"events": [None]}, "events[0]"),
        ({"events": [{"name": "x", "after": "3 days"}], "until": "2 days"}, "events[0].after"),
        ({"until": 3}, "until"),
    ],
)
def test_each_problem_names_its_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_scenario({**BASE, **change})
    assert caught.value.field == field
    assert f"`{field}`" in caught.value.message


def test_a_body_that_is_not_an_object() -> None:
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        parse_scenario([1])  # type: ignore[arg-type]


def test_within_prefixes_the_inner_field() -> None:
    with pytest.raises(InvalidInput) as caught, within("events[2]"):
        raise InvalidInput("`payload.plan` must be a string, got int", field="payload.plan")
    assert caught.value.message == "`events[2].payload.plan` must be a string, got int"
    assert caught.value.field == "events[2].payload.plan"
    with pytest.raises(InvalidInput) as caught, within("automation"):
        raise InvalidInput('step "x" (steps[1]): bad', field="steps[1].config")
    assert caught.value.message == '`automation`: step "x" (steps[1]): bad'


def test_later_events_written_as_text() -> None:
    assert parse_later_event("user.paid after 2 days") == {"name": "user.paid", "after": "2 days"}
    assert parse_later_event('user.paid after 1 week {"plan": "pro"}') == {
        "name": "user.paid",
        "after": "1 week",
        "payload": {"plan": "pro"},
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user.paid", "NAME after DURATION"),
        ("user.paid after soon", "NAME after DURATION"),
        ("user.paid after 2 fortnights", "not a duration"),
        ("user.paid after 2 days {nope", "not valid JSON"),
        ("user.paid after 2 days [1]", "must be a JSON object"),
        ("user.paid after 2 days " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
def test_later_events_that_cannot_be_read(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_later_event(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.timedelta(0), "0 minutes"),
        (dt.timedelta(minutes=1), "1 minute"),
        (dt.timedelta(days=3, hours=2), "3 days 2 hours"),
        (dt.timedelta(weeks=1, minutes=30), "7 days 30 minutes"),
        (dt.timedelta(days=1, seconds=5, microseconds=9), "1 day 5 seconds"),
        (dt.timedelta(seconds=-3), "0 minutes"),
    ],
)
def test_durations_are_humanised(value: dt.timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert format_offset(value) == "+" + text
