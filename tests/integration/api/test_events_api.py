"""POST /events/send and /events/batch over real HTTP."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from engine.db import transaction
from engine.store import contacts as contact_store
from engine.store import content as content_store
from models.tables import Event, Run
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import ApiServer, Stack, free_port
from tests.patience import patience

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)


def test_send_event_answers_202_and_creates_the_contact(api: httpx.Client, rt_stack: Stack) -> None:
    answer = api.post("/events/send", json={"event": "user.created", "email": "new@example.test"})
    assert answer.status_code == 202
    assert answer.json() == {"object": "event", "event": "user.created"}


def test_missing_and_wrong_api_keys(api_server) -> None:  # type: ignore[no-untyped-def]
    with api_server.client(api_key=None) as anonymous:
        answer = anonymous.post("/events/send", json={"event": "x", "email": "a@b.test"})
    assert answer.status_code == 401
    assert answer.json()["name"] == "missing_api_key"
    with api_server.client(api_key="re_wrong") as wrong:
        answer = wrong.post("/events/send", json={"event": "x", "email": "a@b.test"})
    assert answer.status_code == 401
    assert answer.json() == {
        "statusCode": 401,
        "name": "invalid_api_key",
        "message": "API key is invalid",
    }


def count_events(stack: Stack) -> int:
    with transaction(stack.runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(Event)) or 0)


def test_a_key_is_checked_before_the_body_is_decoded(
    api_server,  # type: ignore[no-untyped-def]
) -> None:
    # Every route's order (api/deps.refuse_before_body), kept by the one that reads its own body.
    with api_server.client(api_key="re_wrong") as wrong:
        not_json = wrong.post(
            "/events/send", content=b"{", headers={"content-type": "application/json"}
        )
        no_event = wrong.post("/events/send", json={"email": "a@b.test"})
    assert (not_json.status_code, not_json.json()["name"]) == (401, "invalid_api_key")
    assert (no_event.status_code, no_event.json()["name"]) == (401, "invalid_api_key")


def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    api: httpx.Client, rt_stack: Stack
) -> None:
    body = {"event": "user.created", "email": "idem@example.test"}
    headers = {"Idempotency-Key": "signup-1"}
    first = api.post("/events/send", json=body, headers=headers)
    again = api.post("/events/send", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count_events(rt_stack) == 1

    other = api.post("/events/send", json={**body, "payload": {"x": 1}}, headers=headers)
    assert other.status_code == 409
    assert other.json()["name"] == "invalid_idempotent_request"
    too_long = api.post("/events/send", json=body, headers={"Idempotency-Key": "k" * 257})
    assert too_long.status_code == 422
    assert count_events(rt_stack) == 1


def test_oversize_body_is_refused_with_413(api: httpx.Client) -> None:
    payload = {"blob": "x" * 300_000}
    answer = api.post(
        "/events/send", json={"event": "big", "email": "a@b.test", "payload": payload}
    )
    assert answer.status_code == 413
    assert answer.json()["name"] == "request_too_large"


def test_payload_breaking_the_event_schema_is_refused_and_nothing_stored(
    api: httpx.Client, rt_stack: Stack
) -> None:
    with transaction(rt_stack.runtime.sessions) as session:
        content_store.create_event_definition(
            session, name="order.paid", schema={"amount": "number"}, now=rt_stack.clock.now()
        )
    answer = api.post(
        "/events/send",
        json={"event": "order.paid", "email": "payer@example.test", "payload": {"amount": "ten"}},
    )
    assert answer.status_code == 422
    assert answer.json() == {
        "statusCode": 422,
        "name": "validation_error",
        "message": "`payload.amount` must be a number, got str",
    }
    assert count_events(rt_stack) == 0
    with transaction(rt_stack.runtime.sessions) as session:
        assert contact_store.get_contact_by_email(session, "payer@example.test") is None


def test_batch_is_all_or_nothing(api: httpx.Client, rt_stack: Stack) -> None:
    make_automation(
        rt_stack,
        [
            {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
            {"key": "tag", "type": "contact_update", "config": {"first_name": "Batched"}},
        ],
        chain("start", "tag"),
    )
    good = [{"event": "user.created", "email": unique_email()} for _ in range(3)]
    bad = [*good, {"event": "user.created"}]
    refused = api.post("/events/batch", json=bad)
    assert refused.status_code == 422
    assert refused.json()["message"].startswith("events[3]")
    assert count_events(rt_stack) == 0

    accepted = api.post("/events/batch", json=good)
    assert accepted.status_code == 202
    assert accepted.json() == {
        "object": "list",
        "data": [{"object": "event", "event": "user.created"}] * 3,
    }
    assert count_events(rt_stack) == 3
    too_many = api.post("/events/batch", json=[good[0]] * 101)
    assert too_many.status_code == 422


def test_unknown_contact_id_is_404_and_malformed_is_422(api: httpx.Client) -> None:
    missing = api.post("/events/send", json={"event": "x", "contact_id": str(uuid.uuid4())})
    assert missing.status_code == 404
    malformed = api.post("/events/send", json={"event": "x", "contact_id": "nope"})
    assert malformed.status_code == 422
    assert malformed.json()["message"] == "The `contact_id` must be a valid UUID."
    both = api.post("/events/send", json={"event": "x", "contact_id": "a", "email": "a@b.test"})
    assert both.status_code == 422


STEPS = [
    {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
    {"key": "tag", "type": "contact_update", "config": {"properties": {"seen": True}}},
]


def test_an_api_killed_between_commit_and_publish_loses_nothing(rt_stack: Stack) -> None:
    make_automation(rt_stack, STEPS, chain("start", "tag"))
    marker = rt_stack.workdir / "killed-events.before_publish"
    marker.unlink(missing_ok=True)
    server = ApiServer(rt_stack)
    server.start(AUTOMATIONS_FAULT_INJECTION=f"events.before_publish=kill@{marker}")
    try:
        with server.client() as client:
            # Answered at the commit, so the 202 may leave just before the kill, or not at all.
            try:
                answer = client.post(
                    "/events/send", json={"event": "user.created", "email": unique_email("k")}
                )
            except httpx.TransportError:
                pass
            else:
                assert answer.status_code == 202
    finally:
        server.stop()
    assert marker.exists(), "the API was not killed at the checkpoint"
    with transaction(rt_stack.runtime.sessions) as session:
        (run,) = session.scalars(select(Run))
    # Committed, never published: the sweeper takes the step as lost and sends it.
    assert rt_stack.steps(run.id)["tag"].status == "pending"
    rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.stale_after_seconds + 1))  # sweeps
    assert rt_stack.steps(run.id)["tag"].redispatch_count == 1
    assert rt_stack.wait_run(run.id).status == "completed"


def test_events_committed_while_the_broker_is_down_are_accepted(rt_stack: Stack) -> None:
    # Answering 500 for an event that committed would have its producer send it again, and
    # start its runs twice: the sweeper sends what was committed once the broker is back.
    make_automation(rt_stack, STEPS, chain("start", "tag"))
    server = ApiServer(rt_stack)
    server.start(AUTOMATIONS_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")  # nothing there
    log = rt_stack.workdir / "api.log"
    try:
        with server.client() as client:
            one = client.post("/events/send", json={"event": "user.created", "email": "a@x.test"})
            batch = client.post(
                "/events/batch",
                json=[{"event": "user.created", "email": f"b{n}@x.test"} for n in range(3)],
            )
            # The first send waits out the broker's retries.
            deadline = time.monotonic() + patience(30)
            while "the sweeper sends them" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            # Known down now: no request waits for it, and the process still answers.
            later = client.post("/events/send", json={"event": "user.created", "email": "c@x.test"})
            health = client.get("/health")
            ready = client.get("/ready")
    finally:
        server.stop()
    assert [one.status_code, batch.status_code, later.status_code] == [202, 202, 202]
    assert (health.status_code, ready.status_code) == (200, 503)
    with transaction(rt_stack.runtime.sessions) as session:
        runs = list(session.scalars(select(Run)))
    assert len(runs) == 5
    assert all(rt_stack.steps(run.id)["tag"].status == "pending" for run in runs)
    assert "of committed transactions not sent; the sweeper sends them" in log.read_text()
