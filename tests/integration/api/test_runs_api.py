"""The runs endpoints over real HTTP: list with filters and cursors, detail, cancel."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from engine.db import transaction
from engine.reports import RUNS_CAP
from models.tables import Automation, Run
from tests.integration.factories import unique_email
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$")
# kind=wait sits in a delay, kind=now completes at once, no kind fails on the missing field.
STEPS = [
    {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
    {
        "key": "check",
        "type": "condition",
        "config": {"rule": {"field": "event.kind", "operator": "eq", "value": "wait"}},
    },
    {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
    {"key": "after", "type": "contact_update", "config": {"first_name": "After"}},
    {"key": "done", "type": "contact_update", "config": {"properties": {"done": True}}},
]
CONNECTIONS = [
    {"from": "start", "to": "check"},
    {"from": "check", "to": "pause", "type": "condition_met"},
    {"from": "check", "to": "done", "type": "condition_not_met"},
    {"from": "pause", "to": "after"},
]
OUTCOME = {"wait": "running", "now": "completed", None: "failed"}


def create(api: httpx.Client, event: str = "user.created") -> str:
    steps = [{**STEPS[0], "config": {"event_name": event}}, *STEPS[1:]]
    body = {"name": "runs", "status": "enabled", "steps": steps, "connections": CONNECTIONS}
    answer = api.post("/automations", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def list_runs(api: httpx.Client, automation_id: str, **params: Any) -> dict[str, Any]:
    answer = api.get(f"/automations/{automation_id}/runs", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def start_runs(
    api: httpx.Client, stack: Stack, automation_id: str, kinds: list[str | None]
) -> list[str]:
    """One run per kind, oldest first, once each has reached the status its kind leads to."""
    for kind in kinds:
        payload = {} if kind is None else {"kind": kind}
        body = {"event": "user.created", "email": unique_email(), "payload": payload}
        assert api.post("/events/send", json=body).status_code == 202
    expected = Counter(OUTCOME[kind] for kind in kinds)

    def settled() -> bool:
        data = list_runs(api, automation_id)["data"]
        return Counter(run["status"] for run in data) == expected

    stack.wait_for(settled, what=f"runs {dict(expected)}")
    data = list_runs(api, automation_id)["data"]
    for run in data:
        if run["status"] == "running":
            stack.wait_step(uuid.UUID(run["id"]), "pause", "waiting")
    return [run["id"] for run in reversed(data)]


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["data"]]


def test_list_items_and_status_filters(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = create(api)
    oldest_first = start_runs(api, rt_stack, automation_id, ["wait", "now", None, "now", "wait"])
    page = list_runs(api, automation_id)
    assert page["object"] == "list" and page["has_more"] is False
    assert ids(page) == list(reversed(oldest_first))
    newest = page["data"][0]
    assert set(newest) == {"id", "status", "started_at", "completed_at", "created_at"}
    assert newest["status"] == "running" and newest["completed_at"] is None
    assert TIME.match(newest["started_at"]) and TIME.match(newest["created_at"])
    done = page["data"][1]
    assert done["status"] == "completed" and TIME.match(done["completed_at"])
    assert done["completed_at"] >= done["started_at"]

    both = list_runs(api, automation_id, status="running,completed")
    assert ids(both) == [oldest_first[i] for i in (4, 3, 1, 0)]
    assert ids(list_runs(api, automation_id, status="failed")) == [oldest_first[2]]
    assert ids(list_runs(api, automation_id, status="cancelled, skipped")) == []
    assert ids(list_runs(api, automation_id, status=" running ,")) == [
        oldest_first[i] for i in (4, 0)
    ]


@pytest.mark.parametrize("status", ["bogus", "running,bogus", "Running"])
def test_unknown_run_status_is_named(api: httpx.Client, status: str) -> None:
    automation_id = create(api)
    answer = api.get(f"/automations/{automation_id}/runs", params={"status": status})
    assert answer.status_code == 422
    body = answer.json()
    assert body["name"] == "validation_error"
    bad = status.split(",")[-1]
    assert f"`{bad}`" in body["message"]


def test_cursor_pagination_both_ways(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = create(api)
    runs = list(reversed(start_runs(api, rt_stack, automation_id, ["now"] * 6)))  # newest first

    page = list_runs(api, automation_id, limit=2)
    assert ids(page) == runs[:2] and page["has_more"] is True
    page = list_runs(api, automation_id, limit=2, after=runs[1])
    assert ids(page) == runs[2:4] and page["has_more"] is True
    page = list_runs(api, automation_id, limit=2, after=runs[3])
    assert ids(page) == runs[4:] and page["has_more"] is False
    page = list_runs(api, automation_id, limit=2, before=runs[4])
    assert ids(page) == runs[2:4] and page["has_more"] is True
    page = list_runs(api, automation_id, limit=2, before=runs[2])
    assert ids(page) == runs[:2] and page["has_more"] is False
    page = list_runs(api, automation_id, limit=100, status="completed", after=runs[0])
    assert ids(page) == runs[1:] and page["has_more"] is False

    path = f"/automations/{automation_id}/runs"
    both = api.get(path, params={"after": runs[0], "before": runs[3]})
    assert both.status_code == 422 and both.json()["name"] == "validation_error"
    for limit in (0, 101, "x"):
        answer = api.get(path, params={"limit": limit})
        assert answer.status_code == 422 and answer.json()["name"] == "invalid_parameter"
    stranger = api.get(path, params={"after": str(uuid.uuid4())})
    assert stranger.status_code == 422 and stranger.json()["name"] == "invalid_parameter"


def test_a_cursor_that_left_the_filtered_list_goes_on_from_where_it_was(
    api: httpx.Client, rt_stack: Stack
) -> None:
    """Paging the running runs while one of them is cancelled: the next page is the one it
    would have been, as Stripe's and Resend's lists go on from a cursor deleted since."""
    automation_id = create(api)
    runs = list(reversed(start_runs(api, rt_stack, automation_id, ["wait"] * 5)))  # newest first
    page = list_runs(api, automation_id, limit=2, status="running")
    assert ids(page) == runs[:2] and page["has_more"] is True

    cancelled = api.post(f"/automations/{automation_id}/runs/{runs[1]}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    page = list_runs(api, automation_id, limit=2, status="running", after=runs[1])
    assert ids(page) == runs[2:4] and page["has_more"] is True
    page = list_runs(api, automation_id, limit=2, status="running", before=runs[2])
    assert ids(page) == runs[:1] and page["has_more"] is False


def test_a_run_of_another_automation_is_no_cursor_of_this_one(
    api: httpx.Client, rt_stack: Stack
) -> None:
    """A run never moves to another automation: its id names no place in this list, as an
    unknown id does not (422), whatever the filter or the page's size."""
    automation_id = create(api)
    (run_id,) = start_runs(api, rt_stack, automation_id, ["now"])
    other = f"/automations/{create(api, 'other.event')}/runs"
    for query in ({}, {"limit": "2"}, {"status": "completed,running"}):
        for cursor in ("after", "before"):
            answer = api.get(other, params={**query, cursor: run_id})
            assert answer.status_code == 422, answer.text
            body = answer.json()
            assert body["name"] == "invalid_parameter" and f"`{cursor}`" in body["message"]
    mine = list_runs(api, automation_id, after=run_id)
    assert ids(mine) == [] and mine["has_more"] is False


def test_run_detail_lists_steps_in_graph_order(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = create(api)
    address = unique_email("detail")
    sent = api.post(
        "/events/send",
        json={"event": "user.created", "email": address, "payload": {"kind": "now", "n": 1}},
    )
    assert sent.status_code == 202
    rt_stack.wait_for(lambda: list_runs(api, automation_id, status="completed")["data"])
    (run_id,) = ids(list_runs(api, automation_id))

    answer = api.get(f"/automations/{automation_id}/runs/{run_id}")
    assert answer.status_code == 200
    run = answer.json()
    assert set(run) == {
        "object",
        "id",
        "status",
        "started_at",
        "completed_at",
        "created_at",
        "steps",
        "automation_id",
        "contact_id",
        "event",
        "retries",
        "last_retried_at",
        "replay_of",
        "replayed_by",
    }
    assert run["object"] == "automation_run" and run["id"] == run_id
    assert (run["retries"], run["last_retried_at"], run["replay_of"]) == (0, None, None)
    assert run["replayed_by"] == []
    assert run["status"] == "completed" and run["automation_id"] == automation_id
    for name in ("started_at", "completed_at", "created_at"):
        assert TIME.match(run[name])
    stored = rt_stack.run(uuid.UUID(run_id))
    assert run["contact_id"] == str(stored.contact_id)
    assert run["event"] == {
        "id": str(stored.event_id),
        "name": "user.created",
        "payload": {"kind": "now", "n": 1},
    }
    # Rows were written start, check, then done/pause/after; graph order puts pause before done.
    assert [(s["key"], s["type"], s["status"]) for s in run["steps"]] == [
        ("start", "trigger", "completed"),
        ("check", "condition", "completed"),
        ("pause", "delay", "skipped"),
        ("done", "contact_update", "completed"),
        ("after", "contact_update", "skipped"),
    ]
    for step in run["steps"]:
        assert set(step) == {
            "key",
            "type",
            "status",
            "started_at",
            "completed_at",
            "output",
            "error",
            "created_at",
            "attempts",
        }
        assert step["error"] is None
        assert TIME.match(step["created_at"]) and TIME.match(step["completed_at"])
    # A step that ran has one attempt; a branch not taken never ran.
    (tried,) = run["steps"][3]["attempts"]
    assert tried["attempt"] == 1 and tried["status"] == "completed" and tried["error"] is None
    assert tried["started_at"] == run["steps"][3]["started_at"]
    assert run["steps"][2]["attempts"] == []
    assert run["steps"][2]["started_at"] is None
    assert TIME.match(run["steps"][3]["started_at"])
    assert run["steps"][1]["output"] is not None


def test_failed_run_detail_carries_the_error(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = create(api)
    (run_id,) = start_runs(api, rt_stack, automation_id, [None])
    run = api.get(f"/automations/{automation_id}/runs/{run_id}").json()
    assert run["status"] == "failed"
    keyed = {step["key"]: step for step in run["steps"]}
    assert [step["key"] for step in run["steps"]] == ["start", "check"]
    assert keyed["check"]["status"] == "failed"
    error = keyed["check"]["error"]
    assert set(error) == {"message", "code"}
    assert error["code"] == "missing_field" and "event.kind" in error["message"]


def test_cancel_a_waiting_run(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = create(api)
    waiting, completed, failed = start_runs(api, rt_stack, automation_id, ["wait", "now", None])
    path = f"/automations/{automation_id}/runs/{waiting}/cancel"
    expected = {"object": "automation_run", "id": waiting, "status": "cancelled"}
    answer = api.post(path)
    assert answer.status_code == 200 and answer.json() == expected
    again = api.post(path)
    assert again.status_code == 200 and again.json() == expected

    run = api.get(f"/automations/{automation_id}/runs/{waiting}").json()
    assert run["status"] == "cancelled" and TIME.match(run["completed_at"])
    assert {s["key"]: s["status"] for s in run["steps"]}["pause"] == "cancelled"
    assert ids(list_runs(api, automation_id, status="cancelled")) == [waiting]

    for finished, status in ((completed, "completed"), (failed, "failed")):
        refused = api.post(f"/automations/{automation_id}/runs/{finished}/cancel")
        assert refused.status_code == 422
        assert refused.json() == {
            "statusCode": 422,
            "name": "validation_error",
            "message": f"Run is already {status} and cannot be cancelled",
        }


def test_runs_of_another_automation_are_not_found(api: httpx.Client, rt_stack: Stack) -> None:
    mine = create(api)
    other = create(api, event="other.event")
    (run_id,) = start_runs(api, rt_stack, mine, ["now"])
    not_found = {"statusCode": 404, "name": "not_found", "message": "Run not found"}
    for method, path in [
        ("GET", f"/automations/{other}/runs/{run_id}"),
        ("POST", f"/automations/{other}/runs/{run_id}/cancel"),
        ("GET", f"/automations/{mine}/runs/{uuid.uuid4()}"),
        ("POST", f"/automations/{mine}/runs/{uuid.uuid4()}/cancel"),
    ]:
        answer = api.request(method, path)
        assert answer.status_code == 404 and answer.json() == not_found
    assert list_runs(api, other)["data"] == []
    # The run's own automation, unknown or deleted: the automation is what is not found.
    no_automation = {"statusCode": 404, "name": "not_found", "message": "Automation not found"}
    answer = api.get(f"/automations/{uuid.uuid4()}/runs/{run_id}")
    assert answer.status_code == 404 and answer.json() == no_automation
    assert api.delete(f"/automations/{mine}").status_code == 200
    answer = api.get(f"/automations/{mine}/runs/{run_id}")
    assert answer.status_code == 404 and answer.json() == no_automation
    # Its runs list too, whatever its page and cursor: the automation is checked first.
    for query in ({}, {"limit": "2"}, {"after": run_id}, {"before": str(uuid.uuid4())}):
        answer = api.get(f"/automations/{mine}/runs", params=query)
        assert answer.status_code == 404 and answer.json() == no_automation, query
    for method, suffix in [("GET", ""), ("POST", "/cancel")]:
        answer = api.request(method, f"/automations/{mine}/runs/nope{suffix}")
        assert answer.status_code == 422
        assert answer.json() == {
            "statusCode": 422,
            "name": "invalid_parameter",
            "message": "The `run_id` must be a valid UUID.",
        }


def test_without_limit_every_run_up_to_the_cap(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = create(api)
    now = rt_stack.clock.now()
    with transaction(rt_stack.runtime.sessions) as session:
        automation = session.get(Automation, uuid.UUID(automation_id))
        assert automation is not None
        rows = [
            {
                "id": uuid.uuid4(),
                "automation_id": automation.id,
                "version_id": automation.current_version_id,
                "status": "completed",
                "started_at": now - dt.timedelta(seconds=i),
                "completed_at": now,
                "created_at": now - dt.timedelta(seconds=i),
            }
            for i in range(RUNS_CAP + 1)
        ]
        session.execute(insert(Run), rows)
    page = list_runs(api, automation_id)
    assert len(page["data"]) == RUNS_CAP and page["has_more"] is True
    assert page["data"][0]["id"] == str(rows[0]["id"])
    rest = list_runs(api, automation_id, after=page["data"][-1]["id"])
    assert ids(rest) == [str(rows[-1]["id"])] and rest["has_more"] is False
