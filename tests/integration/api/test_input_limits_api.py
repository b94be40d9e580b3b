"""Bounds at the door, over real HTTP: one address per contact, header text on one line,
payloads of bounded depth and size; and whatever the API accepted, it shows back."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from engine.db import transaction
from engine.json_limits import JsonLimits
from models.tables import Automation, Contact, Event, Run, Template
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)
JSON = {"Content-Type": "application/json"}
HTTP_EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

BAD_ADDRESSES = [
    ("a@example.com, attacker@evil.test", "not a list"),
    ("a@example.com;attacker@evil.test", "not a list"),
    ("@b.com", "needs a name before the @"),
    ("a b@example.com", "must not contain spaces"),
    ("a@example.com\r\nBcc: attacker@evil.test", "line breaks"),
    ("Ada <a@example.com>", "without display name"),
    ("a@[192.0.2.1]", "not an address literal"),
    ("a@localhost", "two labels or more"),
    ("a..b@example.com", "single dots"),
    ("x" * 65 + "@example.com", "at most 64 characters"),
]


def count(stack: Stack, table: type) -> int:
    with transaction(stack.runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def runs_of(stack: Stack, email: str) -> list[uuid.UUID]:
    with transaction(stack.runtime.sessions) as session:
        query = select(Run.id).join(Contact, Contact.id == Run.contact_id)
        return list(session.scalars(query.where(Contact.email == email)))


def refused(answer: httpx.Response, *words: str) -> str:
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["statusCode"] == 422 and body["name"] == "validation_error"
    for word in words:
        assert word in body["message"], body["message"]
    return str(body["message"])


def nested(depth: int) -> Any:
    """`depth` arrays and objects within each other, around a string."""
    value: Any = "leaf"
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


# --- one address per contact ----------------------------------------------------------------


@pytest.mark.parametrize(("email", "rule"), BAD_ADDRESSES)
def test_send_event_refuses_anything_but_one_address(
    api: httpx.Client, rt_stack: Stack, email: str, rule: str
) -> None:
    answer = api.post("/events/send", json={"event": "user.created", "email": email})
    refused(answer, "`email`", rule)
    assert count(rt_stack, Event) == count(rt_stack, Contact) == 0


@HTTP_EXAMPLES
@given(
    st.lists(st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.test", fullmatch=True), min_size=2, max_size=4),
    st.sampled_from([",", ", ", ";", " ", "\n", "\r\n", " and "]),
)
def test_no_list_of_addresses_is_one_contact(
    api: httpx.Client, rt_stack: Stack, addresses: list[str], separator: str
) -> None:
    answer = api.post(
        "/events/send", json={"event": "user.created", "email": separator.join(addresses)}
    )
    refused(answer, "`email`")
    assert count(rt_stack, Contact) == 0


def test_a_batch_with_one_bad_address_stores_nothing(api: httpx.Client, rt_stack: Stack) -> None:
    make_automation(
        rt_stack,
        [{"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}],
        [],
    )
    good = [{"event": "user.created", "email": unique_email()} for _ in range(3)]
    bad = {"event": "user.created", "email": "a@example.com, attacker@evil.test"}
    message = refused(api.post("/events/batch", json=[*good[:2], bad, good[2]]), "not a list")
    assert message.startswith("events[2].email: ")
    assert count(rt_stack, Event) == count(rt_stack, Contact) == count(rt_stack, Run) == 0


@pytest.mark.parametrize(("email", "rule"), BAD_ADDRESSES[:5])
def test_contacts_refuse_anything_but_one_address(
    api: httpx.Client, rt_stack: Stack, email: str, rule: str
) -> None:
    refused(api.post("/contacts", json={"email": email}), "`email`", rule)
    assert count(rt_stack, Contact) == 0
    created = api.post("/contacts", json={"email": "Ada@Bücher.example"})
    assert created.status_code == 201
    contact_id = created.json()["id"]
    # Stored in ASCII (the domain's A-labels) and found by either spelling.
    assert api.get(f"/contacts/{contact_id}").json()["email"] == "ada@xn--bcher-kva.example"
    assert api.get("/contacts/ada@bücher.example").json()["id"] == contact_id
    refused(api.patch(f"/contacts/{contact_id}", json={"email": email}), "`email`", rule)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"from": "Acme <hi@acme.test>, Evil <x@evil.test>"}, ["`from`", "not a list"]),
        ({"from": "hi@acme.test\r\nBcc: x@evil.test"}, ["`from`", "line breaks"]),
        ({"from": "Acme, Inc. <hi@acme.test>"}, ["`from`", "double quotes"]),
        ({"reply_to": "a@acme.test, x@evil.test"}, ["`reply_to[0]`", "not a list"]),
        ({"reply_to": ["a@acme.test", "b@"]}, ["`reply_to[1]`", "domain"]),
        ({"subject": "Hello\r\nBcc: x@evil.test"}, ["`subject`", "carriage return"]),
        ({"subject": "Hi =?utf-8?q?=0D=0ABcc:_x@evil.test?="}, ["`subject`", "encoded word"]),
        ({"from": "=?utf-8?q?x=40evil.test=2C?= <hi@acme.test>"}, ["`from`", "encoded word"]),
        ({"reply_to": [".Acme <hi@acme.test>"]}, ["`reply_to[0]`", "starts with a dot"]),
    ],
)
def test_templates_refuse_lists_and_line_breaks_in_headers(
    api: httpx.Client, fields: dict[str, Any], words: list[str]
) -> None:
    body = {"name": "t", "html": "<p>hi</p>", "from": "Acme <hi@acme.test>", **fields}
    refused(api.post("/templates", json=body), *words)
    fine = {**body, "from": '"Acme, Inc." <hi@acme.test>', "reply_to": ["a@acme.test"]}
    fine.pop("subject", None)
    assert api.post("/templates", json=fine).status_code == 201


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"from": "Acme <hi@acme.test>, x@evil.test"}, ["steps[1]", "`from`", "not a list"]),
        ({"reply_to": "x@evil.test\nBcc: y@evil.test"}, ["steps[1]", "`reply_to`", "line breaks"]),
        ({"subject": "Hi\nthere"}, ["steps[1]", "`subject`", "line feed"]),
        ({"subject": "=?utf-8?b?SGkNCkJjYzogeEBldmlsLnRlc3Q=?="}, ["`subject`", "encoded word"]),
    ],
)
def test_step_configs_refuse_lists_and_line_breaks_in_headers(
    api: httpx.Client, config: dict[str, Any], words: list[str]
) -> None:
    email = {"template": {"id": str(uuid.uuid4())}, **config}
    body = {
        "name": "a",
        "steps": [
            {"key": "start", "type": "trigger", "config": {"event_name": "x"}},
            {"key": "mail", "type": "send_email", "config": email},
        ],
        "connections": [{"from": "start", "to": "mail"}],
    }
    refused(api.post("/automations", json=body), *words)


# --- payload bounds -------------------------------------------------------------------------


def test_payload_depth_and_size_are_bounded(api: httpx.Client, rt_stack: Stack) -> None:
    send = {"event": "deep", "email": unique_email()}
    assert api.post("/events/send", json={**send, "payload": {"v": nested(31)}}).status_code == 202
    answer = api.post("/events/send", json={**send, "payload": {"v": nested(32)}})
    refused(answer, "`payload`", "more than 32 levels deep")
    answer = api.post("/events/send", json={**send, "payload": {"v": nested(300)}})
    refused(answer, "`payload`", "more than 32 levels deep")
    answer = api.post("/events/send", json={**send, "payload": {"blob": "x" * 70_000}})
    refused(answer, "`payload`", "at most 65536 bytes")
    answer = api.post(
        "/events/send", content=json.dumps({**send, "payload": {"n": float("nan")}}), headers=JSON
    )
    refused(answer, "`payload.n`", "finite number")
    batch = [send, {**send, "payload": {"v": nested(40)}}]
    message = refused(api.post("/events/batch", json=batch), "more than 32 levels")
    assert message.startswith("events[1].payload: ")
    assert count(rt_stack, Event) == 1


def test_properties_are_bounded_as_a_whole(api: httpx.Client, rt_stack: Stack) -> None:
    contact_id = api.post(
        "/contacts", json={"email": unique_email(), "properties": {"a": "x" * 40_000}}
    ).json()["id"]
    answer = api.patch(f"/contacts/{contact_id}", json={"properties": {"b": "y" * 40_000}})
    refused(answer, "`properties`", "at most 65536 bytes")
    answer = api.post("/contacts", json={"email": unique_email(), "properties": {"a": "\x00"}})
    refused(answer, "NUL")
    assert api.get(f"/contacts/{contact_id}").json()["properties"] == {"a": "x" * 40_000}


def test_a_condition_value_is_bounded_like_a_payload(api: httpx.Client) -> None:
    rule = {"field": "event.x", "operator": "eq", "value": nested(40)}
    body = {
        "name": "a",
        "steps": [
            {"key": "start", "type": "trigger", "config": {"event_name": "x"}},
            {"key": "check", "type": "condition", "config": {"rule": rule}},
        ],
        "connections": [],
    }
    refused(api.post("/automations", json=body), "steps[1].config", "more than 32 levels")


def test_numbers_and_types_python_refuses_answer_422(api: httpx.Client) -> None:
    """Found by an audit: a duration of 4,301 digits and a rule `type` that is a list answered
    500 (int() refuses such a string; a list is not hashable)."""
    start = {"key": "start", "type": "trigger", "config": {"event_name": "x"}}

    def automation(step: dict[str, Any]) -> dict[str, Any]:
        return {"name": "a", "steps": [start, step], "connections": [{"from": "start", "to": "s"}]}

    huge = "9" * 4301
    too_long = {"key": "s", "type": "delay", "config": {"duration": f"{huge} days"}}
    refused(api.post("/automations", json=automation(too_long)), "longer than the maximum")
    timeout = {"event_name": "y", "timeout": f"{huge} minutes"}
    waits = {"key": "s", "type": "wait_for_event", "config": timeout}
    refused(api.post("/automations", json=automation(waits)), "longer than the maximum")
    listed = {"type": ["and"], "rules": []}
    check = {"key": "s", "type": "condition", "config": {"rule": listed}}
    refused(api.post("/automations", json=automation(check)), 'must be "rule", "and" or "or"')


def test_a_step_sender_longer_than_its_column_is_refused(api: httpx.Client) -> None:
    """On PostgreSQL the email's outbox row keeps its sender in 320 characters, as a template
    does: a longer `from` on a step was accepted, then failed every send as internal_error."""
    template = {"id": str(uuid.uuid4())}
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "x"}},
        {"key": "s", "type": "send_email", "config": {"template": template}},
    ]
    body = {"name": "a", "steps": steps, "connections": [{"from": "start", "to": "s"}]}
    steps[1]["config"]["from"] = "N" * 320 + " <hi@example.com>"
    refused(api.post("/automations", json=body), "`from` holds at most 320 characters")
    steps[1]["config"]["from"] = "N" * 300 + " <hi@example.com>"  # 317: fits
    assert api.post("/automations", json=body).status_code == 201


def test_a_date_beyond_the_calendar_in_utc_reaches_a_waiting_filter(
    api: httpx.Client, rt_stack: Stack
) -> None:
    """It answered 500 once a wait with a date filter was waiting: 9999-12-31 at -05:00 is
    year 10000 in UTC, which Python's datetime cannot hold."""
    paid = {"field": "event.paid_at", "operator": "gte", "value": "2020-01-01"}
    wait = {"event_name": "late.paid", "timeout": "30 minutes", "filter_rule": paid}
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "late.start"}},
        {"key": "w", "type": "wait_for_event", "config": wait},
    ]
    make_automation(rt_stack, steps, chain("start", "w"))
    email = unique_email()
    assert api.post("/events/send", json={"event": "late.start", "email": email}).status_code == 202
    (run,) = runs_of(rt_stack, email)
    rt_stack.wait_step(run, "w", "waiting")

    late = {
        "event": "late.paid",
        "email": email,
        "payload": {"paid_at": "9999-12-31T23:00:00-05:00"},
    }
    assert api.post("/events/batch", json=[late]).status_code == 202
    assert rt_stack.wait_step(run, "w", "completed").branch == "event_received"


# --- what is stored can be shown ------------------------------------------------------------


def test_a_payload_stored_before_the_limits_can_still_be_read(
    api: httpx.Client, rt_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: a payload nested 254 levels was accepted, then its run answered 500 forever."""
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "deep.stored"}},
        {
            "key": "copy",
            "type": "contact_update",
            "config": {"properties": {"deep": {"var": "event.v"}}},
        },
    ]
    automation_id = make_automation(rt_stack, steps, chain("start", "copy"))
    deep = nested(300)
    # As the API stored it before the door had limits.
    monkeypatch.setattr(
        rt_stack.runtime, "json_limits", JsonLimits(max_depth=10_000), raising=False
    )
    result = rt_stack.send("deep.stored", unique_email(), {"v": deep})
    (run_id,) = result.run_ids
    rt_stack.wait_run(run_id)
    # A step no longer writes what the contact endpoints refuse (a nested property)...
    assert rt_stack.steps(run_id)["copy"].error["code"] == "invalid_contact_value"
    # ...but an older version did: the contact as it stored it.
    with transaction(rt_stack.runtime.sessions) as session:
        session.execute(
            update(Contact).where(Contact.id == result.contact_id).values(properties={"deep": deep})
        )

    answer = api.get(f"/automations/{automation_id}/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["event"]["payload"] == {"v": deep}
    contact = api.get(f"/contacts/{result.contact_id}")
    assert contact.status_code == 200, contact.text
    assert contact.json()["properties"]["deep"] == deep
    listed = api.get("/contacts")
    assert listed.status_code == 200, listed.text


@pytest.mark.parametrize(
    ("path", "raw", "words"),
    [
        # Each answered 500: the value reached the database, or the error message quoting it
        # could not be written as UTF-8.
        (
            "/templates",
            '{"name": "t", "html": "x", "variables": [{"key": "A", "type": "string",'
            ' "fallback_value": "a\\ud800"}]}',
            ["`variables[0].fallback_value`", "lone surrogate"],
        ),
        (
            "/automations",
            '{"name": "a\\udfff", "connections": [], "steps": [{"key": "start",'
            ' "type": "trigger", "config": {"event_name": "x"}}]}',
            ["`name`", "lone surrogate"],
        ),
        (
            "/contacts",
            '{"email": "lone@example.test", "properties": {"k\\ud800": 1}}',
            ["`properties.k\\ud800`", "property key"],
        ),
    ],
)
def test_lone_surrogates_are_refused_with_the_field_named(
    api: httpx.Client, rt_stack: Stack, path: str, raw: str, words: list[str]
) -> None:
    refused(api.post(path, content=raw, headers=JSON), *words)
    for table in (Template, Automation, Contact):
        assert count(rt_stack, table) == 0
