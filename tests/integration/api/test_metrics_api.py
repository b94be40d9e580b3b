"""GET /automations/{id}/metrics over real HTTP, against a known set of runs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.integration.factories import (
    chain,
    make_contact,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

ZERO = {"running": 0, "completed": 0, "failed": 0, "cancelled": 0, "skipped": 0}


def parse(wire: str) -> dt.datetime:
    return dt.datetime.fromisoformat(wire)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def mail_automation(api: httpx.Client, stack: Stack) -> str:
    """kind=mail sends an email; another kind waits an hour; no kind fails the condition."""
    make_domain(stack)
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {
            "key": "check",
            "type": "condition",
            "config": {"rule": {"field": "event.kind", "operator": "eq", "value": "mail"}},
        },
        send_email_step("mail", make_template(stack)),
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        {"key": "after", "type": "contact_update", "config": {"first_name": "After"}},
    ]
    connections = [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "mail", "type": "condition_met"},
        {"from": "check", "to": "pause", "type": "condition_not_met"},
        {"from": "pause", "to": "after"},
    ]
    body = {"name": "m", "status": "enabled", "steps": steps, "connections": connections}
    answer = api.post("/automations", json=body)
    assert answer.status_code == 201
    return str(answer.json()["id"])


def send(api: httpx.Client, email: str, kind: str | None) -> None:
    payload = {} if kind is None else {"kind": kind}
    body = {"event": "user.created", "email": email, "payload": payload}
    assert api.post("/events/send", json=body).status_code == 202


def runs(api: httpx.Client, automation_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/automations/{automation_id}/runs").json()["data"])


def settle(api: httpx.Client, stack: Stack, automation_id: str, **expected: int) -> None:
    def done() -> bool:
        return Counter(r["status"] for r in runs(api, automation_id)) == Counter(expected)

    stack.wait_for(done, what=f"runs {expected}")


def metrics(api: httpx.Client, automation_id: str, **params: Any) -> dict[str, Any]:
    answer = api.get(f"/automations/{automation_id}/metrics", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def known_runs(api: httpx.Client, stack: Stack) -> tuple[str, dt.datetime]:
    """Two mailed, one unsubscribed, one failed, one slow (1 hour); a day later, one waiting."""
    automation_id = mail_automation(api, stack)
    began = stack.clock.now()
    gone = unique_email("gone")
    make_contact(stack, gone, unsubscribed=True)
    for email, kind in [(unique_email(), "mail"), (unique_email(), "mail"), (gone, "mail")]:
        send(api, email, kind)
    send(api, unique_email(), None)
    send(api, unique_email(), "slow")
    settle(api, stack, automation_id, completed=2, skipped=1, failed=1, running=1)
    (slow,) = [r["id"] for r in runs(api, automation_id) if r["status"] == "running"]
    stack.wait_step(uuid.UUID(slow), "pause", "waiting")
    stack.advance(dt.timedelta(hours=1, seconds=1))
    assert stack.wait_run(uuid.UUID(slow)).status == "completed"
    stack.clock.advance(dt.timedelta(days=1))
    send(api, unique_email(), "slow")
    settle(api, stack, automation_id, completed=3, skipped=1, failed=1, running=1)
    # A run is `running` from the moment it is sent: wait for its steps, not only its status.
    (waiting,) = [r["id"] for r in runs(api, automation_id) if r["status"] == "running"]
    stack.wait_step(uuid.UUID(waiting), "pause", "waiting")
    return automation_id, began


def test_metrics_of_a_known_set_of_runs(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id, began = known_runs(api, rt_stack)
    start, end = began - dt.timedelta(minutes=1), rt_stack.clock.now() + dt.timedelta(minutes=1)
    body = metrics(api, automation_id, start=iso(start), end=iso(end), granularity="day")

    assert body["object"] == "automation_metrics" and body["automation_id"] == automation_id
    assert parse(body["start"]) == start and parse(body["end"]) == end
    assert body["granularity"] == "day"
    by_status = {**ZERO, "completed": 3, "skipped": 1, "failed": 1, "running": 1}
    assert body["runs"] == {"total": 6, "by_status": by_status}
    assert body["steps"] == {
        "start": {"type": "trigger", "reached": 6, "completed": 6, "failed": 0, "skipped": 0},
        "check": {"type": "condition", "reached": 6, "completed": 5, "failed": 1, "skipped": 0},
        "mail": {"type": "send_email", "reached": 3, "completed": 2, "failed": 0, "skipped": 3},
        "pause": {"type": "delay", "reached": 2, "completed": 1, "failed": 0, "skipped": 3},
        "after": {
            "type": "contact_update",
            "reached": 1,
            "completed": 1,
            "failed": 0,
            "skipped": 3,
        },
    }
    assert list(body["steps"]) == ["start", "check", "mail", "pause", "after"]
    assert body["emails"] == {"sent": 2, "skipped_unsubscribed": 1}

    # Five timed runs: four took moments, the slow one an hour. Nearest rank: p50 is the 3rd,
    # p90 and p99 the 5th, the slow one; each within its bucket's 4.4 % (engine/percentiles.py).
    durations = body["duration_seconds"]
    assert durations["finished_runs"] == 5
    assert 0 <= durations["p50"] < 30
    assert 0.955 * 3600 <= durations["p90"] == durations["p99"] <= 1.045 * 3631

    series = body["series"]
    first_day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    assert [parse(b["start"]) for b in series] == [
        first_day + dt.timedelta(days=i) for i in range(len(series))
    ]
    assert len(series) in (2, 3)  # the window spans one day and a few minutes
    expected = Counter(
        (parse(r["created_at"]).date(), r["status"]) for r in runs(api, automation_id)
    )
    for bucket in series:
        day = parse(bucket["start"]).date()
        assert bucket["by_status"] == {s: expected[(day, s)] for s in ZERO}
        assert bucket["runs_started"] == sum(bucket["by_status"].values())
    assert sum(b["runs_started"] for b in series) == 6


def test_a_narrower_window_and_hourly_buckets(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id, began = known_runs(api, rt_stack)
    start = began - dt.timedelta(minutes=1)
    end = start + dt.timedelta(hours=3)
    body = metrics(api, automation_id, start=iso(start), end=iso(end), granularity="hour")
    assert body["runs"]["total"] == 5
    assert body["runs"]["by_status"] == {**ZERO, "completed": 3, "skipped": 1, "failed": 1}
    series = body["series"]
    assert len(series) in (3, 4)
    assert parse(series[0]["start"]) == start.replace(minute=0, second=0, microsecond=0)
    assert [parse(b["start"]) - parse(series[0]["start"]) for b in series] == [
        dt.timedelta(hours=i) for i in range(len(series))
    ]
    assert sum(b["runs_started"] for b in series) == 5
    assert body["steps"]["pause"]["reached"] == 1


def test_a_window_ending_half_a_second_into_an_hour_counts_that_hour(
    api: httpx.Client, rt_stack: Stack
) -> None:
    automation_id, began = known_runs(api, rt_stack)
    hour = began.replace(minute=0, second=0, microsecond=0)
    end = hour + dt.timedelta(milliseconds=500)
    body = metrics(api, automation_id, start=iso(hour), end=iso(end), granularity="hour")
    # The five runs created in `began`'s hour: it overlaps [hour, hour + 0.5 s).
    assert body["runs"]["by_status"] == {**ZERO, "completed": 3, "skipped": 1, "failed": 1}
    assert [(parse(b["start"]), b["runs_started"]) for b in body["series"]] == [(hour, 5)]
    assert body["duration_seconds"]["finished_runs"] == 5
    assert body["emails"] == {"sent": 2, "skipped_unsubscribed": 1}


def test_default_window_is_the_last_seven_days_by_day(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id, _ = known_runs(api, rt_stack)
    body = metrics(api, automation_id)
    assert body["granularity"] == "day"
    assert parse(body["end"]) - parse(body["start"]) == dt.timedelta(days=7)
    assert abs(parse(body["end"]) - rt_stack.clock.now()) < dt.timedelta(minutes=1)
    assert len(body["series"]) in (7, 8)
    assert body["runs"]["total"] == 6


def test_steps_only_older_versions_had_come_last(api: httpx.Client, rt_stack: Stack) -> None:
    trigger = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
    old = [trigger, {"key": "touch", "type": "contact_update", "config": {"first_name": "A"}}]
    body = {"name": "v", "status": "enabled", "steps": old, "connections": chain("start", "touch")}
    automation_id = api.post("/automations", json=body).json()["id"]
    send(api, unique_email(), None)
    settle(api, rt_stack, automation_id, completed=1)
    new = [trigger, {"key": "other", "type": "contact_update", "config": {"last_name": "B"}}]
    edit = {"status": "disabled", "steps": new, "connections": chain("start", "other")}
    assert api.patch(f"/automations/{automation_id}", json=edit).status_code == 200
    assert api.patch(f"/automations/{automation_id}", json={"status": "enabled"}).status_code == 200
    send(api, unique_email(), None)
    settle(api, rt_stack, automation_id, completed=2)

    steps = metrics(api, automation_id)["steps"]
    assert list(steps) == ["start", "other", "touch"]
    assert steps["start"]["completed"] == 2
    assert steps["other"] == {
        "type": "contact_update",
        "reached": 1,
        "completed": 1,
        "failed": 0,
        "skipped": 0,
    }
    assert steps["touch"]["completed"] == 1


def test_an_automation_without_runs(api: httpx.Client) -> None:
    trigger = {"key": "start", "type": "trigger", "config": {"event_name": "e"}}
    body = {"name": "idle", "steps": [trigger], "connections": []}
    automation_id = api.post("/automations", json=body).json()["id"]
    result = metrics(api, automation_id, granularity="hour", start="2026-01-01", end="2026-01-02")
    assert result["runs"] == {"total": 0, "by_status": ZERO}
    assert result["steps"] == {
        "start": {"type": "trigger", "reached": 0, "completed": 0, "failed": 0, "skipped": 0}
    }
    assert result["duration_seconds"] == {"finished_runs": 0, "p50": None, "p90": None, "p99": None}
    assert result["emails"] == {"sent": 0, "skipped_unsubscribed": 0}
    assert result["start"] == "2026-01-01 00:00:00.000000+00"
    assert len(result["series"]) == 24
    assert result["series"][23] == {
        "start": "2026-01-01 23:00:00.000000+00",
        "runs_started": 0,
        "by_status": ZERO,
    }


@pytest.mark.parametrize(
    ("params", "name", "fragment"),
    [
        ({"start": "yesterday"}, "invalid_parameter", "`start`"),
        ({"end": "2026-13-01"}, "invalid_parameter", "`end`"),
        ({"start": "2026-02-01", "end": "2026-01-01"}, "validation_error", "later than"),
        ({"start": "2026-01-01", "end": "2026-01-01"}, "validation_error", "later than"),
        ({"start": "2025-01-01", "end": "2026-01-03"}, "validation_error", "366 days"),
        ({"granularity": "week"}, "invalid_parameter", "`granularity`"),
        ({"granularity": ""}, "invalid_parameter", "`granularity`"),
    ],
)
def test_window_validation(
    api: httpx.Client, params: dict[str, str], name: str, fragment: str
) -> None:
    trigger = {"key": "start", "type": "trigger", "config": {"event_name": "e"}}
    body = {"name": "idle", "steps": [trigger], "connections": []}
    automation_id = api.post("/automations", json=body).json()["id"]
    answer = api.get(f"/automations/{automation_id}/metrics", params=params)
    assert answer.status_code == 422
    assert answer.json()["name"] == name
    assert fragment in answer.json()["message"]
