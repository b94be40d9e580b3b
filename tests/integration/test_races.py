"""The two races of wait_for_event (docs/architecture.md), forced by checkpoints (PostgreSQL).

SQLite runs one write transaction at a time (BEGIN IMMEDIATE), so neither interleaving can
happen there; on PostgreSQL the contact row lock and the compare-and-set on the waiting row
settle them, and these tests pause one side at the exact point where the other must act.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

from engine import lifecycle
from engine.clock import FrozenClock
from engine.db import transaction
from engine.dispatch import NullDispatcher
from engine.executor import execute_step
from engine.ingest import Ingested, ingest_event
from engine.lifecycle import delete_automation, stop_automation
from engine.runtime import Runtime, create_runtime
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import Stack

T0 = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)


class Gate:
    """A checkpoint that parks the thread reaching `point` until the test releases it."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, name: str) -> None:
        if name == self.point:
            self.reached.set()
            assert self.release.wait(10), f"gate {self.point} never released"


pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)


@pytest.fixture
def pg_stack(rt_stack: Stack) -> Stack:
    return rt_stack


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def runtime(
    stack: Stack, now: dt.datetime, checkpoint: Callable[[str], None] | None = None
) -> Runtime:
    return create_runtime(
        stack.settings, clock=FrozenClock(now), checkpoint=checkpoint or (lambda _: None)
    )


def ingest(rt: Runtime, event: str, email: str, payload: dict[str, Any] | None = None) -> Ingested:
    with transaction(rt.sessions) as session:
        return ingest_event(
            session, rt, event=event, email=email, payload=payload, now=rt.clock.now()
        )


def wait_automation(stack: Stack) -> None:
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {
            "key": "await_paid",
            "type": "wait_for_event",
            "config": {"event_name": "order.paid", "timeout": "1 hour"},
        },
        {"key": "paid", "type": "contact_update", "config": {"first_name": "Paid"}},
        {"key": "late", "type": "contact_update", "config": {"first_name": "Late"}},
    ]
    connections = [
        *chain("start", "await_paid"),
        {"from": "await_paid", "to": "paid", "type": "event_received"},
        {"from": "await_paid", "to": "late", "type": "timeout"},
    ]
    make_automation(stack, steps, connections)


def started_run(stack: Stack, email: str) -> uuid.UUID:
    """A run whose wait step is reached (pending) but not yet executed."""
    (run_id,) = ingest(runtime(stack, T0), "user.created", email).run_ids
    return run_id


def blocked_on_lock(stack: Stack) -> bool:
    with stack.runtime.sessions() as session:
        waiting = session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar_one()
        return bool(waiting)


def test_event_committed_while_wait_registers_is_found(
    pg_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    wait_automation(pg_stack)
    email = unique_email()
    run_id = started_run(pg_stack, email)
    gate = Gate("step.before_contact_lock")
    executing: Future[Any] = pool.submit(
        execute_step, runtime(pg_stack, T0 + dt.timedelta(seconds=2), gate), run_id, "await_paid"
    )
    assert gate.reached.wait(10)
    # The step has not locked the contact (nor been claimed): ingestion cannot see a wait.
    assert (
        ingest(runtime(pg_stack, T0 + dt.timedelta(seconds=1)), "order.paid", email).resumed == []
    )
    gate.release.set()
    executing.result(timeout=10)

    step = pg_stack.steps(run_id)["await_paid"]
    assert step.status == "completed" and step.branch == "event_received"
    assert pg_stack.steps(run_id)["late"].status == "skipped"


def test_event_arriving_while_wait_holds_the_contact_lock_resumes_it(
    pg_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    wait_automation(pg_stack)
    email = unique_email()
    run_id = started_run(pg_stack, email)
    gate = Gate("wait_for_event.locked")
    executing = pool.submit(
        execute_step, runtime(pg_stack, T0 + dt.timedelta(seconds=1), gate), run_id, "await_paid"
    )
    assert gate.reached.wait(10)
    sending = pool.submit(
        ingest, runtime(pg_stack, T0 + dt.timedelta(seconds=2)), "order.paid", email
    )
    pg_stack.wait_for(
        lambda: blocked_on_lock(pg_stack), timeout=10, what="ingestion to wait on the contact lock"
    )
    gate.release.set()
    executing.result(timeout=10)

    assert sending.result(timeout=10).resumed == [(run_id, "await_paid")]
    step = pg_stack.steps(run_id)["await_paid"]
    assert step.status == "completed" and step.branch == "event_received"


def registered_wait(stack: Stack, email: str) -> tuple[uuid.UUID, dt.datetime]:
    run_id = started_run(stack, email)
    execute_step(runtime(stack, T0), run_id, "await_paid")
    step = stack.steps(run_id)["await_paid"]
    assert step.status == "waiting" and step.due_at is not None
    return run_id, step.due_at


def test_timeout_claimed_first_wins_over_simultaneous_event(
    pg_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    wait_automation(pg_stack)
    email = unique_email()
    run_id, due_at = registered_wait(pg_stack, email)
    gate = Gate("step.claimed")
    timing_out = pool.submit(execute_step, runtime(pg_stack, due_at, gate), run_id, "await_paid")
    assert gate.reached.wait(10)
    # The event is stamped a microsecond before the timeout: it would win if it got the row.
    just_before = due_at - dt.timedelta(microseconds=1)
    sending = pool.submit(ingest, runtime(pg_stack, just_before), "order.paid", email)
    pg_stack.wait_for(
        lambda: blocked_on_lock(pg_stack), timeout=10, what="ingestion to wait on the step row"
    )
    gate.release.set()
    timing_out.result(timeout=10)

    assert sending.result(timeout=10).resumed == []
    steps = pg_stack.steps(run_id)
    assert steps["await_paid"].branch == "timeout"
    assert steps["late"].status in ("pending", "running", "completed")
    assert steps["paid"].status == "skipped"


def test_event_resuming_first_wins_over_simultaneous_timeout(
    pg_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    wait_automation(pg_stack)
    email = unique_email()
    run_id, due_at = registered_wait(pg_stack, email)
    gate = Gate("ingest.wait_resumed")
    just_before = due_at - dt.timedelta(microseconds=1)
    sending = pool.submit(ingest, runtime(pg_stack, just_before, gate), "order.paid", email)
    assert gate.reached.wait(10)
    timing_out = pool.submit(execute_step, runtime(pg_stack, due_at), run_id, "await_paid")
    pg_stack.wait_for(
        lambda: blocked_on_lock(pg_stack), timeout=10, what="the timeout to wait on the step row"
    )
    gate.release.set()

    assert sending.result(timeout=10).resumed == [(run_id, "await_paid")]
    assert timing_out.result(timeout=10) == []
    steps = pg_stack.steps(run_id)
    assert steps["await_paid"].branch == "event_received"
    assert steps["late"].status == "skipped"


def listener(stack: Stack, event: str) -> uuid.UUID:
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": event}},
        {"key": "wait", "type": "delay", "config": {"duration": "1 hour"}},
    ]
    return make_automation(stack, steps, chain("start", "wait"))


def run_statuses(stack: Stack, automation_id: uuid.UUID) -> list[str]:
    with stack.runtime.sessions() as session:
        rows = session.execute(
            text("SELECT status FROM runs WHERE automation_id = :id"), {"id": automation_id}
        )
        return [status for (status,) in rows]


@pytest.mark.parametrize("change", ["stop", "delete"])
def test_a_stop_or_delete_waits_for_an_event_being_ingested_and_cancels_its_run(
    pg_stack: Stack, pool: ThreadPoolExecutor, change: str
) -> None:
    automation_id = listener(pg_stack, "signup.done")
    gate = Gate("ingest.contact_locked")  # the routes are read: the automation is a listener
    sending = pool.submit(ingest, runtime(pg_stack, T0, gate), "signup.done", unique_email())
    assert gate.reached.wait(10)

    def stop() -> None:
        if change == "stop":
            lifecycle.stop(runtime(pg_stack, T0), NullDispatcher(), automation_id, cancel_runs=True)
        else:
            lifecycle.delete(runtime(pg_stack, T0), NullDispatcher(), automation_id)

    stopping = pool.submit(stop)
    pg_stack.wait_for(
        lambda: stopping.done() or blocked_on_lock(pg_stack),
        timeout=10,
        what="the stop to end or to wait for the ingestion",
    )
    gate.release.set()
    (run_id,) = sending.result(timeout=10).run_ids
    stopping.result(timeout=10)

    # Either order would do, but not a run left running after the stop that cancels them.
    assert run_statuses(pg_stack, automation_id) == ["cancelled"], run_id


@pytest.mark.parametrize("change", ["stop", "delete"])
def test_an_event_ingested_while_a_stop_commits_starts_no_run(
    pg_stack: Stack, pool: ThreadPoolExecutor, change: str
) -> None:
    automation_id = listener(pg_stack, "signup.done")
    with transaction(pg_stack.runtime.sessions) as session:
        if change == "stop":
            stop_automation(session, automation_id, cancel_runs=False, now=T0)
        else:
            delete_automation(session, automation_id, now=T0)
        # Not committed yet: the automation still reads as enabled to anyone else.
        sending = pool.submit(ingest, runtime(pg_stack, T0), "signup.done", unique_email())
        pg_stack.wait_for(
            lambda: sending.done() or blocked_on_lock(pg_stack),
            timeout=10,
            what="the ingestion to end or to wait for the stop",
        )

    assert sending.result(timeout=10).run_ids == []
    assert run_statuses(pg_stack, automation_id) == []
