"""POST /automations/simulate over real HTTP: the answer, bad input, and no trace left behind."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select

from engine.db import transaction
from engine.store import segments as segment_store
from models.tables import Base
from tests.conftest import REDIS_URL
from tests.integration.factories import (
    chain,
    make_automation,
    make_contact,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import ApiServer, Stack
from tests.patience import patience

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def journey(stack: Stack) -> dict[str, Any]:
    """Every kind of write a run makes: an email, a contact update, a segment, a deletion."""
    make_domain(stack)
    template_id = make_template(stack)
    with transaction(stack.runtime.sessions) as session:
        segment = segment_store.create_segment(session, name="vip", now=stack.clock.now())
    steps = [
        TRIGGER,
        send_email_step("hello", template_id),
        {"key": "pause", "type": "delay", "config": {"duration": "3 days"}},
        {"key": "touch", "type": "contact_update", "config": {"properties": {"seen": True}}},
        {"key": "join", "type": "add_to_segment", "config": {"segment_id": str(segment.id)}},
        {
            "key": "await_paid",
            "type": "wait_for_event",
            "config": {"event_name": "user.paid", "timeout": "2 days"},
        },
        send_email_step("receipt", template_id),
        {"key": "forget", "type": "contact_delete", "config": {}},
    ]
    connections = [
        *chain("start", "hello", "pause", "touch", "join", "await_paid"),
        {"from": "await_paid", "to": "receipt", "type": "event_received"},
        {"from": "await_paid", "to": "forget", "type": "timeout"},
    ]
    return {"steps": steps, "connections": connections}


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_simulation_answers_the_path_and_the_emails(api: httpx.Client, rt_stack: Stack) -> None:
    graph = journey(rt_stack)
    body = {
        "automation": graph,
        "contact": {"email": "Ada@Example.test", "first_name": "Ada"},
        "event": {"name": "user.created", "payload": {"plan": "pro"}},
        "events": [{"name": "user.paid", "after": "4 days", "payload": {"plan": "pro"}}],
    }
    answer = api.post("/automations/simulate", json=body)

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["object"] == "simulation"
    assert result["status"] == "completed"
    assert result["duration"] == "4 days"
    path = [(s["key"], s["status"], s["at"]) for s in result["steps"]]
    assert path == [
        ("start", "completed", "+0 minutes"),
        ("hello", "completed", "+0 minutes"),
        ("pause", "completed", "+3 days"),
        ("touch", "completed", "+3 days"),
        ("join", "completed", "+3 days"),
        ("await_paid", "completed", "+4 days"),
        # The branch not taken is settled the moment the wait resumes, before the receipt goes.
        ("forget", "skipped", "+4 days"),
        ("receipt", "completed", "+4 days"),
    ]
    assert result["steps"][-2]["skip_reason"] == "branch_not_taken"
    hello, receipt = result["emails"]
    assert (hello["step_key"], hello["at"], receipt["at"]) == ("hello", "+0 minutes", "+4 days")
    assert hello["to"] == "ada@example.test"
    assert hello["from"] == "Acme <hello@acme.test>"
    assert hello["subject"] == "Welcome, Ada!"
    assert hello["html"].startswith("<p>Hi Ada, your plan is pro.</p>")
    assert hello["text"] == "Hi Ada, plan pro."
    assert hello["headers"]["List-Unsubscribe"].startswith("<http")
    assert hello["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert result["events"] == [
        {"name": "user.paid", "at": "+4 days", "resumed_step": "await_paid"}
    ]


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_a_stored_automation_is_simulated_even_when_disabled(
    api: httpx.Client, rt_stack: Stack
) -> None:
    graph = journey(rt_stack)
    automation_id = make_automation(rt_stack, **graph, status="disabled")
    body = {"automation_id": str(automation_id), "contact": {"email": "bo@example.test"}}
    answer = api.post("/automations/simulate", json=body, params={"x": "1"})

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] == "completed"
    assert result["duration"] == "5 days"
    assert [s["key"] for s in result["steps"] if s["status"] == "completed"][-1] == "forget"


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_until_stops_a_run_that_is_still_waiting(api: httpx.Client, rt_stack: Stack) -> None:
    body = {"automation": journey(rt_stack), "contact": {"email": "cy@example.test"}}
    answer = api.post("/automations/simulate", json={**body, "until": "1 day"})

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["status"], result["duration"]) == ("waiting", "1 day")
    assert [(s["key"], s["status"]) for s in result["steps"]][-1] == ("pause", "waiting")


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_a_stored_contact_is_found_by_email_and_overridden(
    api: httpx.Client, rt_stack: Stack
) -> None:
    graph = journey(rt_stack)
    make_contact(rt_stack, "dee@example.test", first_name="Dee", unsubscribed=True)
    body = {"automation": graph, "contact": {"email": " Dee@Example.test "}}
    stored = api.post("/automations/simulate", json=body).json()
    assert stored["status"] == "skipped" and stored["emails"] == []
    body["contact"]["unsubscribed"] = False
    resubscribed = api.post("/automations/simulate", json=body).json()
    assert resubscribed["status"] == "completed"
    assert resubscribed["emails"][0]["subject"] == "Welcome, Dee!"
    assert api.get("/contacts/dee@example.test").json()["unsubscribed"] is True


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_a_simulation_sends_the_published_version_not_the_draft(
    api: httpx.Client, rt_stack: Stack
) -> None:
    graph = journey(rt_stack)
    template_id = graph["steps"][1]["config"]["template"]["id"]
    edit = {"subject": "Draft subject", "html": "<p>draft</p>"}
    assert api.patch(f"/templates/{template_id}", json=edit).status_code == 200
    body = {"automation": graph, "contact": {"email": "eve@example.test", "first_name": "Eve"}}
    answer = api.post("/automations/simulate", json=body).json()
    assert answer["emails"][0]["subject"] == "Welcome, Eve!"
    api.post(f"/templates/{template_id}/publish").raise_for_status()
    answer = api.post("/automations/simulate", json=body).json()
    assert (answer["emails"][0]["subject"], answer["emails"][0]["html"]) == tuple(edit.values())


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_simulations_side_by_side_do_not_mix(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack
) -> None:
    """Each simulation has its own in-memory database: eight at once, eight answers."""
    graph = journey(rt_stack)

    def one(n: int) -> dict[str, Any]:
        body = {
            "automation": graph,
            "contact": {"email": f"p{n}@example.test", "first_name": f"P{n}"},
            "events": [{"name": "user.paid", "after": f"{3 * 24 + n} hours"}] if n % 2 else [],
        }
        with api_server.client() as client:
            return dict(client.post("/automations/simulate", json=body).json())

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, range(8)))
    for n, answer in enumerate(answers):
        assert answer["emails"][0]["subject"] == f"Welcome, P{n}!"
        assert answer["emails"][0]["to"] == f"p{n}@example.test"
        last = "receipt" if n % 2 else "forget"
        assert [s["key"] for s in answer["steps"] if s["status"] == "completed"][-1] == last


def checksums(stack: Stack) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row of every table."""
    found = {}
    with transaction(stack.runtime.sessions) as session:
        for table in Base.metadata.sorted_tables:
            rows = sorted(repr(tuple(row)) for row in session.execute(select(table)))
            digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
            found[table.name] = (len(rows), digest)
    return found


def redis_contents() -> dict[bytes, bytes | None]:
    """Every key of the test's Redis database with its serialized value."""
    client = redis.Redis.from_url(REDIS_URL)
    return {key: client.dump(key) for key in client.scan_iter(count=1000)}


@pytest.fixture
def worker_stopped(rt_stack: Stack) -> Iterator[Stack]:
    """No worker takes messages off the queue meanwhile, so the queue shows every publication."""
    rt_stack.stop_worker()
    try:
        yield rt_stack
    finally:
        rt_stack.start_worker()


def test_a_simulation_leaves_the_database_and_the_broker_unchanged(
    api: httpx.Client, worker_stopped: Stack
) -> None:
    stack = worker_stopped
    graph = journey(stack)
    automation_id = make_automation(stack, **graph)
    address = unique_email("kept")
    contact_id = make_contact(stack, address, first_name="Kept", properties={"plan": "pro"})
    database, broker = checksums(stack), redis_contents()
    bodies = [
        {"automation": graph, "contact": {"email": address}},
        {
            "automation_id": str(automation_id),
            "contact": {"id": str(contact_id), "unsubscribed": True},
            "events": [{"name": "user.paid", "after": "3 days"}],
        },
        {
            "automation_id": str(automation_id),
            "contact": {"id": str(contact_id)},
            "events": [{"name": "user.paid", "after": "80 hours"}],
        },
    ]
    for body in bodies:
        answer = api.post("/automations/simulate", json=body, headers={"Idempotency-Key": "sim-1"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] in ("completed", "skipped")

    assert checksums(stack) == database
    assert redis_contents() == broker
    assert stack.sink.to(address) == []
    # The checks can see a change: a real event writes rows and publishes its first step
    # (polled: a publish may be left to the API's sending thread).
    assert api.post("/events/send", json={"event": "user.created", "email": address}).is_success
    assert checksums(stack) != database
    if not stack.embedded:
        deadline = time.monotonic() + patience(5)
        while redis_contents() == broker and time.monotonic() < deadline:
            time.sleep(0.02)
        assert redis_contents() != broker


BAD_INPUT = [
    ({"automation_id": "00000000-0000-4000-8000-000000000000"}, "`automation_id`", "no automation"),
    ({"automation_id": "not-a-uuid"}, "`automation_id`", "valid UUID"),
    ({"automation": {"steps": [TRIGGER], "connections": "x"}}, "`automation`", "connections"),
    ({"automation": {"steps": [], "connections": []}}, "`automation`", "steps"),
    ({"event": {"payload": ["plan"]}}, "`event.payload`", "must be an object"),
    ({"event": {"payload": "pro"}}, "`event.payload`", "must be an object"),
    ({"event": {"name": "user.paid"}}, "`event.name`", "trigger listens for `user.created`"),
    ({"events": [{"name": "x", "after": "2 dayz"}]}, "`events[0].after`", "not a duration"),
    ({"events": [{"name": "x", "after": "2 days", "payload": 3}]}, "`events[0].payload`", "object"),
    ({"events": [{"name": "x"}]}, "`events[0].after`", "not a duration"),
    ({"events": "x"}, "`events`", "list"),
    ({"contact": {"email": "nope"}}, "`contact.email`", "email address"),
    ({"contact": {"first_name": "No email"}}, "`contact.email`", "email address"),
    ({"contact": {"email": "a@b.test", "unsubscribed": "yes"}}, "`contact.unsubscribed`", "true"),
    ({"contact": {"id": "00000000-0000-4000-8000-000000000000"}}, "`contact.id`", "no contact"),
    ({"contact": {"email": "a@b.test", "age": 3}}, "`contact.age`", "not a known field"),
    ({"until": "forever"}, "`until`", "not a duration"),
    ({"surprise": True}, "`surprise`", "not permitted"),
]


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
@pytest.mark.parametrize(("change", "field", "rule"), BAD_INPUT)
def test_bad_input_is_a_422_naming_the_field(
    api: httpx.Client, rt_stack: Stack, change: dict[str, Any], field: str, rule: str
) -> None:
    graph = {"steps": [TRIGGER], "connections": []}
    body = {"automation": graph, "contact": {"email": "x@example.test"}}
    if "automation_id" in change:
        body.pop("automation")
    answer = api.post("/automations/simulate", json={**body, **change})

    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert set(error) == {"statusCode", "name", "message"}
    assert field in error["message"] and rule in error["message"], error["message"]
