"""Liveness and readiness answers, byte for byte, and the 503 an operator's probe sees."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.harness import ApiServer, Stack, free_port

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)


def test_health_and_ready_answer_ok(api: httpx.Client) -> None:
    assert api.get("/health").content == b'{"status":"ok"}'
    ready = api.get("/ready")
    assert ready.status_code == 200
    assert ready.content == b'{"status":"ok","database":"ok","broker":"ok"}'


def test_ready_answers_503_naming_the_check_that_failed(rt_stack: Stack) -> None:
    server = ApiServer(rt_stack)
    # Nothing listens there: the broker check fails, the database check still passes.
    server.start(AUTOMATIONS_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    try:
        with server.client(api_key=None) as client:
            ready = client.get("/ready")
    finally:
        server.stop()
    assert ready.status_code == 503
    body = ready.json()
    assert list(body) == ["status", "database", "broker"]
    assert body["status"] == "unavailable" and body["database"] == "ok"
    assert body["broker"].startswith("unreachable: ")
