"""Liveness and readiness answers, byte for byte, and the 503 an operator's probe sees."""

from __future__ import annotations

import datetime as dt
import math

import httpx
import pytest

from engine.db import transaction
from engine.sweeper_health import HEARTBEAT
from models.housekeeping import Heartbeat
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


def _set_up_heartbeat(stack: Stack) -> None:
    """The sweeper's row as migration 0011 makes it: no tick yet, the wait starting now."""
    with transaction(stack.runtime.sessions) as session:
        session.add(Heartbeat(name=HEARTBEAT, created_at=stack.clock.now(), beat_at=None))


def _gauge(api: httpx.Client, name: str) -> float:
    (line,) = [row for row in api.get("/metrics").text.splitlines() if row.startswith(name + " ")]
    return float(line.split()[1])


def test_the_sweeper_check_waits_for_a_first_tick_then_alerts_when_ticks_stop(
    api: httpx.Client, rt_stack: Stack
) -> None:
    limit = rt_stack.settings.sweeper_late_after
    _set_up_heartbeat(rt_stack)
    waiting = api.get("/health/sweeper")
    assert waiting.status_code == 200
    assert list(waiting.json()) == ["status", "last_tick_at", "age_seconds", "late_after_seconds"]
    assert waiting.json()["status"] == "waiting" and waiting.json()["last_tick_at"] is None
    assert waiting.json()["late_after_seconds"] == limit == 60

    rt_stack.sweep()  # a real tick, on the API's clock
    ticked = api.get("/health/sweeper")
    assert ticked.status_code == 200 and ticked.json()["status"] == "ok"
    assert ticked.json()["age_seconds"] < 5 and ticked.json()["last_tick_at"].endswith("+00")
    assert _gauge(api, "automations_sweeper_last_tick_age_seconds") < 5
    assert _gauge(api, "automations_sweeper_late_after_seconds") == limit

    rt_stack.clock.advance(dt.timedelta(seconds=limit + 1))  # beat stopped: no tick since
    late = api.get("/health/sweeper")
    assert late.status_code == 503
    assert late.json()["status"] == "late" and late.json()["age_seconds"] > limit
    assert late.json()["last_tick_at"] == ticked.json()["last_tick_at"]
    assert _gauge(api, "automations_sweeper_last_tick_age_seconds") > limit
    # Not the API's own readiness: a stopped beat must not take every API process out of a
    # load balancer, which would refuse the events the database could still store.
    ready = api.get("/ready")
    assert ready.status_code == 200
    assert ready.content == b'{"status":"ok","database":"ok","broker":"ok"}'


def test_a_deployment_whose_sweeper_never_ticked_is_late_after_the_limit(
    api: httpx.Client, rt_stack: Stack
) -> None:
    _set_up_heartbeat(rt_stack)
    rt_stack.clock.advance(dt.timedelta(seconds=rt_stack.settings.sweeper_late_after + 1))
    never = api.get("/health/sweeper")
    assert never.status_code == 503
    assert never.json()["status"] == "late" and never.json()["last_tick_at"] is None


def test_a_missing_heartbeat_row_is_late_with_no_age(api: httpx.Client) -> None:
    missing = api.get("/health/sweeper")
    assert missing.status_code == 503
    assert missing.json() == {
        "status": "late",
        "last_tick_at": None,
        "age_seconds": None,
        "late_after_seconds": 60.0,
    }
    assert _gauge(api, "automations_sweeper_last_tick_age_seconds") == math.inf
