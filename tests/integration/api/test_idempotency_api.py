"""Idempotency-Key over real HTTP: scoped to the API key's id, never opened by a request refused
for its key, and still one event for two racing first requests."""

from __future__ import annotations

import threading

import httpx
import pytest
from sqlalchemy import func, select, text

from engine.db import transaction
from models.housekeeping import IdempotencyRecord
from models.tables import Event
from tests.integration.harness import API_KEY, ApiServer, Stack

BODY = {"event": "user.created", "email": "idem@example.test"}


def count(stack: Stack, table: type) -> int:
    with transaction(stack.runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
def test_the_scope_is_the_key_not_how_its_header_is_spelled(
    api: httpx.Client, rt_stack: Stack
) -> None:
    first = api.post(
        "/events/send",
        json=BODY,
        headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "spelling"},
    )
    again = api.post(
        "/events/send",
        json=BODY,
        headers={"Authorization": f"bearer   {API_KEY}", "Idempotency-Key": "spelling"},
    )
    assert first.status_code == again.status_code == 202
    assert again.headers.get("idempotent-replayed") == "true"
    assert count(rt_stack, Event) == 1


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
def test_two_keys_never_share_a_record(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack
) -> None:
    other = api.post("/api-keys", json={"name": "second"}).json()["token"]
    headers = {"Idempotency-Key": "shared-name"}
    assert api.post("/events/send", json=BODY, headers=headers).status_code == 202
    with api_server.client(api_key=other) as second:
        answer = second.post("/events/send", json=BODY, headers=headers)
    assert answer.status_code == 202 and "idempotent-replayed" not in answer.headers
    assert count(rt_stack, Event) == 2


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
def test_requests_refused_for_their_key_open_no_record(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack
) -> None:
    sending = api.post("/api-keys", json={"name": "mailer", "permission": "sending_access"})
    headers = {"Idempotency-Key": "refused-first"}
    with api_server.client(api_key=None) as anonymous:
        assert anonymous.post("/events/send", json=BODY, headers=headers).status_code == 401
    with api_server.client(api_key="re_not_a_key") as wrong:
        assert wrong.post("/events/send", json=BODY, headers=headers).status_code == 401
    with api_server.client(api_key=sending.json()["token"]) as restricted:
        refused = restricted.post("/automations", json={}, headers=headers)
        assert refused.json()["name"] == "restricted_api_key"
    assert count(rt_stack, IdempotencyRecord) == 0

    # The key was not spent: its first accepted request runs.
    answer = api.post("/events/send", json=BODY, headers=headers)
    assert answer.status_code == 202 and "idempotent-replayed" not in answer.headers
    assert count(rt_stack, IdempotencyRecord) == 1


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_racing_first_requests_run_once_and_the_other_is_told_to_retry(
    api: httpx.Client, rt_stack: Stack
) -> None:
    headers = {"Idempotency-Key": "race"}
    answers: list[httpx.Response] = []
    db_engine = rt_stack.runtime.sessions.kw["bind"]
    # Hold inserts into `events`: the first request claims its key, then waits on this lock.
    with db_engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE events IN SHARE MODE"))
        first = threading.Thread(
            target=lambda: answers.append(api.post("/events/send", json=BODY, headers=headers))
        )
        first.start()
        rt_stack.wait_for(
            lambda: count(rt_stack, IdempotencyRecord) == 1, what="the first request's claim"
        )
        second = api.post("/events/send", json=BODY, headers=headers)
        assert second.status_code == 409
        assert second.json()["name"] == "concurrent_idempotent_requests"
        blocker.rollback()
    first.join(20)
    assert [a.status_code for a in answers] == [202]
    replay = api.post("/events/send", json=BODY, headers=headers)
    assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true"
    other_body = api.post("/events/send", json={**BODY, "payload": {"x": 1}}, headers=headers)
    assert other_body.json()["name"] == "invalid_idempotent_request"
    assert count(rt_stack, Event) == 1
