"""The official `resend` Python SDK, pointed at our server, drives a whole automation."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import resend

from tests.integration.harness import API_KEY, ApiServer, Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$")
RUN_STEP_FIELDS = {
    "key",
    "type",
    "status",
    "started_at",
    "completed_at",
    "output",
    "error",
    "created_at",
}


@pytest.fixture
def sdk(rt_stack: Stack, api_server: ApiServer) -> Iterator[None]:
    previous = resend.api_key, resend.api_url
    resend.api_key, resend.api_url = API_KEY, api_server.base_url
    yield
    resend.api_key, resend.api_url = previous


def every_step_type(template_id: str, segment_id: str) -> dict[str, Any]:
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {
            "key": "welcome",
            "type": "send_email",
            "config": {
                "template": {
                    "id": template_id,
                    "variables": {"FIRST_NAME": {"var": "event.first_name"}},
                }
            },
        },
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        {
            "key": "is_pro",
            "type": "condition",
            "config": {"type": "rule", "field": "event.plan", "operator": "eq", "value": "pro"},
        },
        {"key": "tag", "type": "add_to_segment", "config": {"segment_id": segment_id}},
        {
            "key": "await_upgrade",
            "type": "wait_for_event",
            "config": {"event_name": "plan.upgraded", "timeout": "1 day"},
        },
        {"key": "note", "type": "contact_update", "config": {"properties": {"engaged": True}}},
        {"key": "forget", "type": "contact_delete", "config": {}},
    ]
    connections = [
        {"from": "start", "to": "welcome", "type": "default"},
        {"from": "welcome", "to": "pause", "type": "default"},
        {"from": "pause", "to": "is_pro", "type": "default"},
        {"from": "is_pro", "to": "tag", "type": "condition_met"},
        {"from": "is_pro", "to": "await_upgrade", "type": "condition_not_met"},
        {"from": "tag", "to": "note", "type": "default"},
        {"from": "await_upgrade", "to": "note", "type": "event_received"},
        {"from": "await_upgrade", "to": "forget", "type": "timeout"},
    ]
    return {"steps": steps, "connections": connections}


def send(event: str, email: str, payload: dict[str, Any] | None = None) -> None:
    params: dict[str, Any] = {"event": event, "email": email}
    if payload is not None:
        params["payload"] = payload
    answer = resend.Events.send(params)  # type: ignore[arg-type]
    assert answer["object"] == "event" and answer["event"] == event


def run_statuses(automation_id: str, status: str | None = None) -> dict[str, str]:
    params = {"status": status} if status else None
    listed = resend.Automations.Runs.list(automation_id, params)  # type: ignore[arg-type]
    return {run["id"]: run["status"] for run in listed["data"]}


def test_sdk_drives_an_automation_with_every_step_type(sdk: None, rt_stack: Stack) -> None:
    domain = resend.Domains.create({"name": "acme.test"})
    resend.Domains.verify(domain["id"])
    template = resend.Templates.create(
        {
            "name": "Welcome",
            "alias": "welcome",
            "from": "Acme <hello@acme.test>",
            "subject": "Welcome, {{{FIRST_NAME}}}",
            "html": "<p>Hi {{{FIRST_NAME}}}</p><a href='{{{RESEND_UNSUBSCRIBE_URL}}}'>stop</a>",
            "variables": [{"key": "FIRST_NAME", "type": "string", "fallback_value": "friend"}],
        }
    )
    resend.Templates.publish(template["id"])
    segment = resend.Segments.create({"name": "Pro users"})

    created = resend.Automations.create(
        {
            "name": "Onboarding",
            "status": "enabled",
            **every_step_type(template["id"], segment["id"]),
        }
    )
    assert created["object"] == "automation"
    automation_id = created["id"]
    fetched = resend.Automations.get(automation_id)
    assert set(fetched) >= {
        "object",
        "id",
        "name",
        "status",
        "created_at",
        "updated_at",
        "steps",
        "connections",
    }
    assert fetched["status"] == "enabled" and TIMESTAMP.match(fetched["created_at"])
    assert [s["type"] for s in fetched["steps"]] == [
        "trigger",
        "send_email",
        "delay",
        "condition",
        "add_to_segment",
        "wait_for_event",
        "contact_update",
        "contact_delete",
    ]
    assert all("type" in c for c in fetched["connections"])

    send("user.created", "pro@example.test", {"plan": "pro", "first_name": "Pat"})
    send("user.created", "upgrader@example.test", {"plan": "free", "first_name": "Uma"})
    send("user.created", "quiet@example.test", {"plan": "free"})
    started = [uuid.UUID(run_id) for run_id in run_statuses(automation_id, "running")]
    assert len(started) == 3
    for run_id in started:
        rt_stack.wait_step(run_id, "pause", "waiting")
    rt_stack.advance(dt.timedelta(hours=1, seconds=1))
    rt_stack.wait_for(
        lambda: "completed" in run_statuses(automation_id).values(), what="the pro run to finish"
    )
    waiting = [
        uuid.UUID(r) for r, status in run_statuses(automation_id).items() if status == "running"
    ]
    for run_id in waiting:
        rt_stack.wait_step(run_id, "await_upgrade", "waiting")
    send("plan.upgraded", "upgrader@example.test")
    rt_stack.advance(dt.timedelta(days=1, seconds=1))
    rt_stack.wait_for(
        lambda: set(run_statuses(automation_id).values()) == {"completed"},
        what="every run to complete",
    )

    both = run_statuses(automation_id, "running,completed")
    assert len(both) == 3 and run_statuses(automation_id, "failed") == {}
    first_page = resend.Automations.Runs.list(automation_id, {"limit": 2})
    assert len(first_page["data"]) == 2 and first_page["has_more"] is True
    second_page = resend.Automations.Runs.list(
        automation_id, {"limit": 2, "after": first_page["data"][-1]["id"]}
    )
    assert len(second_page["data"]) == 1 and second_page["has_more"] is False
    back = resend.Automations.Runs.list(
        automation_id, {"limit": 2, "before": second_page["data"][0]["id"]}
    )
    assert [r["id"] for r in back["data"]] == [r["id"] for r in first_page["data"]]
    for item in first_page["data"]:
        assert set(item) >= {"id", "status", "started_at", "completed_at", "created_at"}
        assert TIMESTAMP.match(item["started_at"]) and TIMESTAMP.match(item["completed_at"])

    quiet_run = next(r for r in second_page["data"] + first_page["data"])
    detail = resend.Automations.Runs.get(automation_id, quiet_run["id"])
    assert detail["object"] == "automation_run"
    keys = [step["key"] for step in detail["steps"]]
    assert keys[:4] == ["start", "welcome", "pause", "is_pro"]
    for step in detail["steps"]:
        assert set(step) >= RUN_STEP_FIELDS
    welcome = detail["steps"][1]
    assert welcome["status"] == "completed"
    assert set(welcome["output"]) >= {"to", "email_id", "template"}

    stopped = resend.Automations.stop(automation_id)
    assert stopped["status"] == "disabled"
    assert resend.Automations.get(automation_id)["status"] == "disabled"
    send("user.created", "late@example.test", {"plan": "pro"})
    assert len(run_statuses(automation_id)) == 3
