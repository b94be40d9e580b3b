"""A step that raises ends failed: each unexpected exception is a recorded attempt, and the
retry policy (or an error that cannot change) ends the step and its run.

The steps run in this process on a frozen clock against the stack's database, with a
checkpoint that raises inside the handler the way a bug would; one test goes through the
real Celery worker with the same fault injected by setting.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from engine.clock import FrozenClock
from engine.db import transaction
from engine.dispatch import Dispatch, Message
from engine.executor import execute_step
from engine.ingest import ingest_event
from engine.mail import OutgoingEmail
from engine.reports import get_run
from engine.runtime import Runtime, create_runtime
from engine.store import segments as segment_store
from models.enums import RUN_TERMINAL
from models.tables import Run
from tests.integration.factories import (
    chain,
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack

T0 = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)
MAX_ATTEMPTS = 3
TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def raising_at(point: str, exc: Exception) -> Callable[[str], None]:
    def checkpoint(name: str) -> None:
        if name == point:
            raise exc

    return checkpoint


def runtime(stack: Stack, checkpoint: Callable[[str], None], **settings: Any) -> Runtime:
    tuned = stack.settings.model_copy(
        update={"retry_max_attempts": MAX_ATTEMPTS, "retry_base_seconds": 10, **settings}
    )
    return create_runtime(tuned, clock=FrozenClock(T0), checkpoint=checkpoint)


def drive(rt: Runtime, messages: Sequence[Message], run_id: uuid.UUID) -> str:
    """Execute the run's steps in this process, moving the frozen clock to each countdown,
    until the run ends; its status."""
    clock = rt.clock
    assert isinstance(clock, FrozenClock)
    queue = [m for m in messages if isinstance(m, Dispatch)]
    for _ in range(50):
        if not queue:
            break
        item = queue.pop(0)
        clock.advance(dt.timedelta(seconds=item.countdown))
        queue.extend(
            m for m in execute_step(rt, item.run_id, item.step_key) if isinstance(m, Dispatch)
        )
    with transaction(rt.sessions) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return str(run.status)


def send(rt: Runtime, email: str) -> tuple[uuid.UUID, list[Message]]:
    with transaction(rt.sessions) as session:
        result = ingest_event(session, rt, event="user.created", email=email, now=rt.clock.now())
    (run_id,) = result.run_ids
    return run_id, list(result.dispatches)


def detail(rt: Runtime, automation_id: uuid.UUID, run_id: uuid.UUID) -> Any:
    with transaction(rt.sessions) as session:
        return get_run(session, automation_id, run_id, graph=rt.graph)


def step_of(stack: Stack, step_type: str) -> dict[str, Any]:
    """A step of this type that would complete without the fault."""
    if step_type == "send_email":
        make_domain(stack)
        return send_email_step("step", make_template(stack))
    configs: dict[str, dict[str, Any]] = {
        "delay": {"duration": "1 hour"},
        "condition": {"rule": {"field": "event.plan", "operator": "exists"}},
        "wait_for_event": {"event_name": "user.paid", "timeout": "1 hour"},
        "contact_update": {"first_name": "Updated"},
        "contact_delete": {},
    }
    if step_type == "add_to_segment":
        with transaction(stack.runtime.sessions) as session:
            segment = segment_store.create_segment(session, name="s", now=T0)
        return {"key": "step", "type": step_type, "config": {"segment_id": str(segment.id)}}
    return {"key": "step", "type": step_type, "config": configs[step_type]}


pytestmark = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)

STEP_TYPES = [
    "send_email",
    "delay",
    "condition",
    "wait_for_event",
    "contact_update",
    "contact_delete",
    "add_to_segment",
]


@pytest.mark.parametrize("step_type", STEP_TYPES)
def test_a_handler_that_raises_fails_its_run_within_the_retry_policy(
    rt_stack: Stack, step_type: str
) -> None:
    step = step_of(rt_stack, step_type)
    automation_id = make_automation(rt_stack, [TRIGGER, step], chain("start", "step"))
    rt = runtime(rt_stack, raising_at(f"{step_type}.handler", KeyError("secret-value")))
    run_id, messages = send(rt, unique_email("poison"))

    assert drive(rt, messages, run_id) == "failed"
    found = detail(rt, automation_id, run_id)
    (failed,) = [s for s in found.steps if s.step_key == "step"]
    assert failed.status == "failed" and failed.error["code"] == "internal_error"
    message = failed.error["message"]
    assert "KeyError" in message and "gave up after 3 attempts" in message
    # What the exception said may hold data or secrets: it stays in the log.
    assert "secret-value" not in message and "Traceback" not in message
    tries = found.attempts["step"]
    assert [t.number for t in tries] == [1, 2, 3]
    assert [t.status for t in tries] == ["failed"] * 3
    assert all(t.error["code"] == "internal_error" for t in tries)
    assert all(t.completed_at is not None for t in tries)


def test_a_header_with_a_line_break_fails_at_once(rt_stack: Stack) -> None:
    step = step_of(rt_stack, "send_email")
    automation_id = make_automation(rt_stack, [TRIGGER, step], chain("start", "step"))
    broken = ValueError("Header values may not contain linefeed or carriage return characters")
    rt = runtime(rt_stack, raising_at("send_email.handler", broken))
    run_id, messages = send(rt, unique_email("header"))

    assert drive(rt, messages, run_id) == "failed"
    found = detail(rt, automation_id, run_id)
    (tried,) = found.attempts["step"]
    assert tried.status == "failed" and tried.error["code"] == "invalid_header_value"


class BrokenTransport:
    """A transport with a bug: every send raises something no one planned for."""

    def __init__(self) -> None:
        self.calls = 0

    def send(self, message: OutgoingEmail) -> str:
        self.calls += 1
        raise AttributeError("'NoneType' object has no attribute 'sendmail'")


def test_a_transport_that_raises_is_retried_then_fails(rt_stack: Stack) -> None:
    step = step_of(rt_stack, "send_email")
    automation_id = make_automation(rt_stack, [TRIGGER, step], chain("start", "step"))
    transport = BrokenTransport()
    tuned = rt_stack.settings.model_copy(
        update={"retry_max_attempts": MAX_ATTEMPTS, "retry_base_seconds": 10}
    )
    rt = create_runtime(tuned, clock=FrozenClock(T0), transport=transport)  # type: ignore[arg-type]
    run_id, messages = send(rt, unique_email("transport"))

    assert drive(rt, messages, run_id) == "failed"
    assert transport.calls == MAX_ATTEMPTS
    found = detail(rt, automation_id, run_id)
    tries = found.attempts["step"]
    assert [(t.number, t.error["code"]) for t in tries] == [
        (1, "internal_error"),
        (2, "internal_error"),
        (3, "internal_error"),
    ]
    # Each try began when its worker claimed the step, after the one before had ended.
    for earlier, later in itertools.pairwise(tries):
        assert later.started_at is not None and earlier.completed_at is not None
        assert later.started_at >= earlier.completed_at


def test_a_step_that_raises_once_then_succeeds_completes(rt_stack: Stack) -> None:
    steps = [TRIGGER, {"key": "step", "type": "contact_update", "config": {"last_name": "B"}}]
    automation_id = make_automation(rt_stack, steps, chain("start", "step"))
    raised: list[str] = []

    def once(name: str) -> None:
        if name == "contact_update.handler" and not raised:
            raised.append(name)
            raise RuntimeError("a passing glitch")

    rt = runtime(rt_stack, once)
    run_id, messages = send(rt, unique_email("once"))
    assert drive(rt, messages, run_id) == "completed"
    tries = detail(rt, automation_id, run_id).attempts["step"]
    assert [(t.number, t.status) for t in tries] == [(1, "failed"), (2, "completed")]


def test_the_worker_records_a_poison_step_and_ends_the_run(rt_stack: Stack) -> None:
    rule = {"field": "event.plan", "operator": "exists"}
    steps = [TRIGGER, {"key": "check", "type": "condition", "config": {"rule": rule}}]
    automation_id = make_automation(rt_stack, steps, chain("start", "check"))
    rt_stack.restart_worker(
        AUTOMATIONS_FAULT_INJECTION="condition.handler=raise",
        AUTOMATIONS_RETRY_MAX_ATTEMPTS="2",
        AUTOMATIONS_RETRY_BASE_SECONDS="1",
    )
    try:
        (run_id,) = rt_stack.send("user.created", unique_email("worker")).run_ids
        rt_stack.wait_for(
            lambda: rt_stack.steps(run_id)["check"].failed_attempts >= 1,
            what="the first failed attempt",
        )
        # The second try is due a second later (a countdown); it fails too, and that is all.
        run = rt_stack.wait_run(run_id)
    finally:
        rt_stack.restart_worker()
    assert run.status == "failed" and run.status in RUN_TERMINAL
    with transaction(rt_stack.runtime.sessions) as session:
        found = get_run(session, automation_id, run_id, graph=rt_stack.runtime.graph)
    (check,) = [s for s in found.steps if s.step_key == "check"]
    assert check.error["code"] == "internal_error" and "InjectedFault" in check.error["message"]
    assert len(found.attempts["check"]) == 2
