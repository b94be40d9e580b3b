"""POST /events/send and /events/batch over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.harness import Stack

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
