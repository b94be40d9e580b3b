"""Recovering failed runs over real HTTP, with a real worker and SMTP sink: retry one run from
its failed step, replay it on the current version, both in bulk by filter."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.bulk import BULK_CANCELLED, parse_request, start_bulk
from engine.db import transaction
from models.enums import BulkAction, TemplateStatus
from tests.integration.factories import (
    chain,
    make_automation,
    make_contact,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import ROOT, Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def runs_path(automation_id: object) -> str:
    return f"/automations/{automation_id}/runs"


def run_detail(api: httpx.Client, automation_id: object, run_id: object) -> dict[str, Any]:
    answer = api.get(f"{runs_path(automation_id)}/{run_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def step(run: dict[str, Any], key: str) -> dict[str, Any]:
    (found,) = [s for s in run["steps"] if s["key"] == key]
    return found


def statuses(api: httpx.Client, automation_id: object) -> Counter[str]:
    answer = api.get(runs_path(automation_id))
    assert answer.status_code == 200, answer.text
    return Counter(run["status"] for run in answer.json()["data"])


def send(api: httpx.Client, email: str, payload: dict[str, Any] | None = None) -> None:
    body = {"event": "user.created", "email": email, "payload": payload or {}}
    answer = api.post("/events/send", json=body)
    assert answer.status_code == 202, answer.text


def only_run(api: httpx.Client, automation_id: object) -> str:
    answer = api.get(runs_path(automation_id))
    (run,) = answer.json()["data"]
    return str(run["id"])


def wait_bulk(api: httpx.Client, stack: Stack, automation_id: object, bulk_id: str) -> Any:
    path = f"{runs_path(automation_id)}/retries/{bulk_id}"
    stack.wait_for(
        lambda: api.get(path).json()["status"] == "completed", timeout=60, what="the bulk to end"
    )
    return api.get(path).json()


def test_bulk_retry_after_publishing_sends_each_email_exactly_once(
    api: httpx.Client, rt_stack: Stack
) -> None:
    make_domain(rt_stack)
    first = make_template(rt_stack)
    second = make_template(rt_stack, status=TemplateStatus.DRAFT, alias="follow-up")
    steps = [TRIGGER, send_email_step("hello", first), send_email_step("follow_up", second)]
    automation_id = make_automation(rt_stack, steps, chain("start", "hello", "follow_up"))
    emails = [unique_email("bulk") for _ in range(50)]
    batch = [{"event": "user.created", "email": email} for email in emails]
    assert api.post("/events/batch", json=batch).status_code == 202
    rt_stack.wait_for(lambda: statuses(api, automation_id)["failed"] == 50, timeout=60)
    failed = run_detail(
        api, automation_id, api.get(runs_path(automation_id)).json()["data"][0]["id"]
    )
    assert step(failed, "follow_up")["error"]["code"] == "template_not_published"

    path = f"{runs_path(automation_id)}/retry"
    narrow = {"error_code": "template_not_published", "step_key": "follow_up"}
    dry = api.post(path, json={**narrow, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["matched"] == 50 and dry.json()["id"] is None
    assert len(dry.json()["sample"]) == 10
    assert statuses(api, automation_id)["failed"] == 50  # a dry run changes nothing

    assert api.post(f"/templates/{second}/publish").status_code == 200
    started = api.post(path, json=narrow, headers={"Idempotency-Key": "retry-all-50"})
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["object"] == "bulk_retry" and body["matched"] == 50
    again = api.post(path, json=narrow, headers={"Idempotency-Key": "retry-all-50"})
    assert again.json()["id"] == body["id"]  # the first answer, replayed
    done = wait_bulk(api, rt_stack, automation_id, body["id"])
    assert (done["done"], done["skipped"], done["failed"]) == (50, 0, 0)
    rt_stack.wait_for(lambda: statuses(api, automation_id)["completed"] == 50, timeout=60)

    for email in emails:
        messages = rt_stack.sink.to(email)
        assert len(messages) == 2, email  # the first email was not sent again
        assert len({m["Message-ID"] for m in messages}) == 2
    run_id = api.get(runs_path(automation_id)).json()["data"][0]["id"]
    run = run_detail(api, automation_id, run_id)
    assert run["retries"] == 1
    assert [a["status"] for a in step(run, "hello")["attempts"]] == ["completed"]
    tries = step(run, "follow_up")["attempts"]
    assert [(a["attempt"], a["status"]) for a in tries] == [(1, "failed"), (2, "completed")]
    assert tries[0]["error"]["code"] == "template_not_published"
    metrics = api.get(f"/automations/{automation_id}/metrics").json()
    assert metrics["recovery"] == {"retried_runs": 50, "retries": 50, "replays": 0}
    # Nothing failed is left: the same request again matches nothing.
    assert api.post(path, json={**narrow, "dry_run": True}).json()["matched"] == 0


def test_bulk_replay_runs_failed_runs_on_the_fixed_version(
    api: httpx.Client, rt_stack: Stack
) -> None:
    broken = [
        TRIGGER,
        {
            "key": "check",
            "type": "condition",
            "config": {"rule": {"field": "event.plan", "operator": "eq", "value": "pro"}},
        },
        {"key": "pro", "type": "contact_update", "config": {"last_name": "Pro"}},
        {"key": "free", "type": "contact_update", "config": {"last_name": "Free"}},
    ]
    connections = [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "pro", "type": "condition_met"},
        {"from": "check", "to": "free", "type": "condition_not_met"},
    ]
    automation_id = make_automation(rt_stack, broken, connections)
    for _ in range(5):
        send(api, unique_email("replay"))
    rt_stack.wait_for(lambda: statuses(api, automation_id)["failed"] == 5)
    failed_ids = [run["id"] for run in api.get(runs_path(automation_id)).json()["data"]]
    assert step(run_detail(api, automation_id, failed_ids[0]), "check")["error"]["code"] == (
        "missing_field"
    )

    fixed = [dict(s) for s in broken]
    fixed[1] = {**broken[1], "config": {"rule": {"field": "event.plan", "operator": "exists"}}}
    assert api.post(f"/automations/{automation_id}/stop").status_code == 200
    patch = api.patch(
        f"/automations/{automation_id}", json={"steps": fixed, "connections": connections}
    )
    assert patch.status_code == 200, patch.text

    started = api.post(f"{runs_path(automation_id)}/replay", json={})
    assert started.status_code == 202, started.text
    assert started.json()["matched"] == 5
    done = wait_bulk(api, rt_stack, automation_id, started.json()["id"])
    assert done["done"] == 5
    rt_stack.wait_for(lambda: statuses(api, automation_id) == Counter(failed=5, completed=5))
    for run_id in failed_ids:
        old = run_detail(api, automation_id, run_id)
        assert old["status"] == "failed"
        (new_id,) = old["replayed_by"]
        new = run_detail(api, automation_id, new_id)
        assert new["replay_of"] == run_id and new["status"] == "completed"
        assert new["event"] == old["event"] and new["contact_id"] == old["contact_id"]
        assert step(new, "free")["status"] == "completed"
    # Runs already replayed are not replayed twice.
    again = api.post(f"{runs_path(automation_id)}/replay", json={"dry_run": True})
    assert again.json()["matched"] == 0
    assert api.get(f"/automations/{automation_id}/metrics").json()["recovery"]["replays"] == 5


def test_retrying_a_timed_out_wait_waits_again_with_a_fresh_timeout(
    api: httpx.Client, rt_stack: Stack
) -> None:
    steps = [
        TRIGGER,
        {
            "key": "paid",
            "type": "wait_for_event",
            "config": {"event_name": "user.paid", "timeout": "1 hour"},
        },
        {"key": "thank", "type": "contact_update", "config": {"last_name": "Paid"}},
    ]
    connections = [
        {"from": "start", "to": "paid"},
        {"from": "paid", "to": "thank", "type": "event_received"},
    ]
    automation_id = make_automation(rt_stack, steps, connections)
    email = unique_email("wait")
    send(api, email)
    run_id = uuid.UUID(only_run(api, automation_id))
    first = rt_stack.wait_step(run_id, "paid", "waiting")
    rt_stack.advance(dt.timedelta(hours=1, seconds=1))
    assert rt_stack.wait_run(run_id).status == "failed"

    answer = api.post(f"{runs_path(automation_id)}/{run_id}/retry")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "running" and answer.json()["id"] == str(run_id)
    again = rt_stack.wait_step(run_id, "paid", "waiting")
    assert first.due_at is not None and again.due_at is not None
    assert again.due_at >= first.due_at + dt.timedelta(hours=1)  # a fresh hour from the retry

    paid = api.post("/events/send", json={"event": "user.paid", "email": email})
    assert paid.status_code == 202
    assert rt_stack.wait_run(run_id).status == "completed"
    tries = step(run_detail(api, automation_id, run_id), "paid")["attempts"]
    assert [(a["status"], (a["error"] or {}).get("code")) for a in tries] == [
        ("failed", "wait_timeout"),
        ("completed", None),
    ]


def verify_domain(stack: Stack, name: str) -> None:
    """`automations domains verify NAME`, as an operator runs it."""
    script = shutil.which("automations", path=str(Path(sys.executable).parent))
    assert script is not None
    done = subprocess.run(
        [script, "domains", "verify", name],
        env=stack.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_unverified_sender_fails_again_until_the_domain_is_verified(
    api: httpx.Client, rt_stack: Stack
) -> None:
    make_domain(rt_stack, verified=False)
    steps = [TRIGGER, send_email_step("hello", make_template(rt_stack))]
    automation_id = make_automation(rt_stack, steps, chain("start", "hello"))
    email = unique_email("sender")
    send(api, email)
    run_id = uuid.UUID(only_run(api, automation_id))
    assert rt_stack.wait_run(run_id).status == "failed"
    retry = f"{runs_path(automation_id)}/{run_id}/retry"

    assert api.post(retry).status_code == 200
    rt_stack.wait_for(
        lambda: rt_stack.run(run_id).status == "failed" and (rt_stack.run(run_id).retries == 1)
    )
    tries = step(run_detail(api, automation_id, run_id), "hello")["attempts"]
    assert [a["error"]["code"] for a in tries] == ["domain_not_verified"] * 2
    assert tries[0]["error"]["message"] == tries[1]["error"]["message"]
    assert "acme.test" in tries[1]["error"]["message"]

    verify_domain(rt_stack, "acme.test")
    assert api.post(retry).status_code == 200
    assert rt_stack.wait_run(run_id).status == "completed"
    assert len(rt_stack.sink.to(email)) == 1
    run = run_detail(api, automation_id, run_id)
    assert run["retries"] == 2
    assert [a["status"] for a in step(run, "hello")["attempts"]] == [
        "failed",
        "failed",
        "completed",
    ]


def test_only_failed_or_cancelled_runs_can_be_retried(api: httpx.Client, rt_stack: Stack) -> None:
    make_domain(rt_stack)
    steps = [
        TRIGGER,
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        send_email_step("hello", make_template(rt_stack)),
    ]
    automation_id = make_automation(rt_stack, steps, chain("start", "pause", "hello"))
    waiting = unique_email("waiting")
    send(api, waiting)
    run_id = uuid.UUID(only_run(api, automation_id))
    rt_stack.wait_step(run_id, "pause", "waiting")
    retry = f"{runs_path(automation_id)}/{run_id}/retry"

    running = api.post(retry)
    assert running.status_code == 422 and running.json()["name"] == "run_not_retryable"
    assert "running" in running.json()["message"]

    assert api.post(f"{runs_path(automation_id)}/{run_id}/cancel").status_code == 200
    cancelled = api.post(retry)
    assert cancelled.status_code == 422 and "cancelled_step" in cancelled.json()["message"]
    wrong = api.post(retry, json={"from": "somewhere"})
    assert wrong.status_code == 422 and "from" in wrong.json()["message"]
    resumed = api.post(retry, json={"from": "cancelled_step"})
    assert resumed.status_code == 200, resumed.text
    rt_stack.wait_step(run_id, "pause", "waiting")
    rt_stack.advance(dt.timedelta(hours=1, seconds=1))
    assert rt_stack.wait_run(run_id).status == "completed"
    completed = api.post(retry)
    assert completed.status_code == 422 and "completed" in completed.json()["message"]

    unsubscribed = unique_email("unsubscribed")
    make_contact(rt_stack, unsubscribed, unsubscribed=True)
    send(api, unsubscribed)
    rt_stack.wait_for(lambda: statuses(api, automation_id)["running"] == 1)
    skipped_id = next(
        run["id"]
        for run in api.get(runs_path(automation_id)).json()["data"]
        if run["status"] == "running"
    )
    # Parked before the clock moves, or its delay would be due an hour after the move.
    rt_stack.wait_step(uuid.UUID(skipped_id), "pause", "waiting")
    rt_stack.advance(dt.timedelta(hours=1, seconds=1))
    assert rt_stack.wait_run(uuid.UUID(skipped_id)).status == "skipped"
    skipped = api.post(f"{runs_path(automation_id)}/{skipped_id}/retry")
    assert skipped.status_code == 422 and skipped.json()["name"] == "run_not_retryable"
    assert len(rt_stack.sink.to(waiting)) == 1


def test_two_concurrent_retries_take_effect_once(api: httpx.Client, rt_stack: Stack) -> None:
    make_domain(rt_stack, verified=False)
    steps = [TRIGGER, send_email_step("hello", make_template(rt_stack))]
    automation_id = make_automation(rt_stack, steps, chain("start", "hello"))
    send(api, unique_email("race"))
    run_id = uuid.UUID(only_run(api, automation_id))
    assert rt_stack.wait_run(run_id).status == "failed"
    retry = f"{runs_path(automation_id)}/{run_id}/retry"

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda _: api.post(retry), range(2)))
    codes = sorted(answer.status_code for answer in answers)
    assert codes[0] == 200, [a.text for a in answers]
    # Concurrent: the compare-and-set lost (409); just after the first committed: not failed.
    assert codes[1] in (409, 422), answers[1].text
    loser = max(answers, key=lambda answer: answer.status_code).json()
    assert loser["name"] in ("run_retry_conflict", "run_not_retryable")
    rt_stack.wait_for(lambda: rt_stack.run(run_id).status == "failed")
    assert rt_stack.run(run_id).retries == 1


def test_a_run_whose_contact_was_deleted_cannot_be_retried_or_replayed(
    api: httpx.Client, rt_stack: Stack
) -> None:
    make_domain(rt_stack, verified=False)
    steps = [TRIGGER, send_email_step("hello", make_template(rt_stack))]
    automation_id = make_automation(rt_stack, steps, chain("start", "hello"))
    email = unique_email("gone")
    send(api, email)
    run_id = only_run(api, automation_id)
    assert rt_stack.wait_run(uuid.UUID(run_id)).status == "failed"
    assert api.delete(f"/contacts/{email}").status_code == 200

    retry = api.post(f"{runs_path(automation_id)}/{run_id}/retry")
    assert retry.status_code == 422 and retry.json()["name"] == "run_not_retryable"
    assert "contact was deleted" in retry.json()["message"]
    replay = api.post(f"{runs_path(automation_id)}/{run_id}/replay")
    assert replay.status_code == 422 and replay.json()["name"] == "run_not_replayable"


def test_replay_one_run(api: httpx.Client, rt_stack: Stack) -> None:
    steps = [
        TRIGGER,
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        {"key": "tag", "type": "contact_update", "config": {"last_name": "Tagged"}},
    ]
    automation_id = make_automation(rt_stack, steps, chain("start", "pause", "tag"))
    send(api, unique_email("one"), {"plan": "pro"})
    run_id = only_run(api, automation_id)
    rt_stack.wait_step(uuid.UUID(run_id), "pause", "waiting")
    path = f"{runs_path(automation_id)}/{run_id}/replay"
    running = api.post(path)
    assert running.status_code == 422 and running.json()["name"] == "run_not_replayable"

    rt_stack.advance(dt.timedelta(hours=1, seconds=1))
    assert rt_stack.wait_run(uuid.UUID(run_id)).status == "completed"
    answer = api.post(path)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["object"] == "automation_run" and body["replay_of"] == run_id
    new_id = body["id"]
    rt_stack.wait_step(uuid.UUID(new_id), "pause", "waiting")
    assert run_detail(api, automation_id, run_id)["replayed_by"] == [new_id]
    new = run_detail(api, automation_id, new_id)
    assert new["replay_of"] == run_id and new["event"]["payload"] == {"plan": "pro"}


def test_bulk_requests_are_checked_and_followed(api: httpx.Client, rt_stack: Stack) -> None:
    steps = [TRIGGER, {"key": "tag", "type": "contact_update", "config": {"last_name": "X"}}]
    automation_id = make_automation(rt_stack, steps, chain("start", "tag"))
    path = f"{runs_path(automation_id)}/retry"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"colour": "red"}, "colour"),
        ({"status": "running"}, "status"),
        ({"status": "cancelled"}, "cancelled_step"),
        ({"status": 3}, "status"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"error_code": ""}, "error_code"),
        ({"error_code": "\ud800"}, "error_code"),
        ({"step_key": "a\x00"}, "step_key"),
        ({"dry_run": "yes"}, "dry_run"),
    ]
    for body, named in cases:
        # As ASCII JSON: a lone surrogate travels as its \u escape.
        answer = api.post(
            path, content=json.dumps(body), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, (body, answer.text)
        assert named in answer.json()["message"], (body, answer.json())
    replay_running = api.post(f"{runs_path(automation_id)}/replay", json={"status": "running"})
    assert replay_running.status_code == 422
    # A replay starts a new run from the trigger: there is no step to start `from`.
    replay_from = {"status": "cancelled", "from": "cancelled_step"}
    replay_from_answer = api.post(f"{runs_path(automation_id)}/replay", json=replay_from)
    assert replay_from_answer.status_code == 422, replay_from_answer.text
    assert "`from`" in replay_from_answer.json()["message"]

    nothing = api.post(path, json={})
    assert nothing.status_code == 202
    assert (nothing.json()["matched"], nothing.json()["status"]) == (0, "completed")
    follow = api.get(f"{runs_path(automation_id)}/retries/{nothing.json()['id']}")
    assert follow.status_code == 200 and follow.json()["items"] == []
    unknown = api.get(f"{runs_path(automation_id)}/retries/{uuid.uuid4()}")
    assert unknown.status_code == 404
    assert api.get(f"{runs_path(automation_id)}/retries/nope").status_code == 422
    other = api.post(f"{runs_path(uuid.uuid4())}/retry", json={})
    assert other.status_code == 404

    # Cancelling: a completed operation cannot be; an unknown one is not found.
    done = f"{runs_path(automation_id)}/retries/{nothing.json()['id']}/cancel"
    over = api.post(done)
    assert over.status_code == 422, over.text
    assert over.json()["message"] == ("Bulk operation is already completed and cannot be cancelled")
    assert api.post(f"{runs_path(automation_id)}/retries/{uuid.uuid4()}/cancel").status_code == 404
    assert api.post(f"{runs_path(uuid.uuid4())}/retries/{uuid.uuid4()}/cancel").status_code == 404
    assert api.post(f"{runs_path(automation_id)}/retries/nope/cancel").status_code == 422


def test_a_bulk_operation_cancelled_over_http_leaves_the_runs_it_had_not_reached(
    api: httpx.Client, rt_stack: Stack
) -> None:
    template_id = make_template(rt_stack, status=TemplateStatus.DRAFT)
    make_domain(rt_stack)
    steps = [TRIGGER, send_email_step("hello", template_id)]
    automation_id = make_automation(rt_stack, steps, chain("start", "hello"))
    for _ in range(3):
        send(api, unique_email())
    rt_stack.wait_for(lambda: statuses(api, automation_id) == Counter({"failed": 3}))
    # Committed, its message lost (no worker takes it): the operation stays running.
    request = parse_request(automation_id, BulkAction.RETRY, {})
    with transaction(rt_stack.runtime.sessions) as session:
        bulk_id = start_bulk(session, request, now=rt_stack.clock.now()).bulk.id

    cancelled = api.post(f"{runs_path(automation_id)}/retries/{bulk_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["status"], body["matched"], body["done"], body["skipped"]) == (
        "cancelled",
        3,
        0,
        3,
    )
    assert body["completed_at"] is not None
    again = api.post(f"{runs_path(automation_id)}/retries/{bulk_id}/cancel")
    assert (again.status_code, again.json()) == (200, body)  # cancelled already: as it is
    items = api.get(f"{runs_path(automation_id)}/retries/{bulk_id}").json()["items"]
    assert {item["status"] for item in items} == {"skipped"}
    assert {item["error"] for item in items} == {BULK_CANCELLED}
    assert statuses(api, automation_id) == Counter({"failed": 3})  # left as they were
