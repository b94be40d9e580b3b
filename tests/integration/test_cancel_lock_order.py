"""A stop that cancels its runs while an event resumes waits of them (PostgreSQL).

An event for a contact resumes the contact's waiting steps one at a time, oldest first, each
with its run. A stop with `cancel_runs` cancels every unfinished step of its runs in one
statement, in the order of its plan (through the steps' primary key: by run id). Two waits of
one contact, the older one in the run with the greater id, are then taken in opposite orders:
unless the stop takes the runs' contacts first, as the event does, each holds a wait that the
other one needs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from engine.db import transaction
from engine.executor import execute_step
from engine.lifecycle import stop_automation
from tests.integration.factories import unique_email
from tests.integration.harness import Stack
from tests.integration.test_contact_races import wait_until_blocked
from tests.integration.test_races import T0, Gate, ingest, runtime, wait_automation

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def automation_id_of(stack: Stack, run_id: uuid.UUID) -> uuid.UUID:
    with stack.runtime.sessions() as session:
        found = session.execute(
            text("SELECT automation_id FROM runs WHERE id = :id"), {"id": run_id}
        ).scalar_one()
        return uuid.UUID(str(found))


def two_waits_of_one_contact(stack: Stack, email: str) -> list[uuid.UUID]:
    """Two runs of one automation for one contact, each waiting for `order.paid`; the run
    whose wait began first (which the event resumes first) has the greater id."""
    wait_automation(stack)
    runs = sorted(ingest(runtime(stack, T0), "user.created", email).run_ids[0] for _ in range(2))
    for run_id in runs:
        execute_step(runtime(stack, T0), run_id, "start")
        execute_step(runtime(stack, T0), run_id, "await_paid")
        assert stack.steps(run_id)["await_paid"].status == "waiting"
    with transaction(stack.runtime.sessions) as session:
        session.execute(
            text(
                "UPDATE run_steps SET created_at = :earlier"
                " WHERE run_id = :id AND step_key = 'await_paid'"
            ),
            {"id": runs[-1], "earlier": T0 - dt.timedelta(seconds=1)},
        )
    return runs


def test_a_stop_cancelling_runs_while_an_event_resumes_two_of_their_waits(
    rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    email = unique_email()
    runs = two_waits_of_one_contact(rt_stack, email)
    automation_id = automation_id_of(rt_stack, runs[0])
    gate = Gate("ingest.wait_resumed")  # the contact and the older wait (greater run id) held
    later = T0 + dt.timedelta(seconds=2)
    sending = pool.submit(ingest, runtime(rt_stack, later, gate), "order.paid", email)
    assert gate.reached.wait(10)

    def stop() -> list[uuid.UUID]:
        with transaction(rt_stack.runtime.sessions) as session:
            return stop_automation(session, automation_id, cancel_runs=True, now=later)

    stopping = pool.submit(stop)
    wait_until_blocked(rt_stack)
    gate.release.set()
    resumed = sending.result(timeout=20).resumed
    cancelled = stopping.result(timeout=20)

    assert sorted(resumed) == [(run_id, "await_paid") for run_id in runs]
    assert sorted(cancelled) == runs
    for run_id in runs:
        assert rt_stack.run(run_id).status == "cancelled"
        steps = rt_stack.steps(run_id)
        assert steps["await_paid"].status == "completed"
        assert steps["paid"].status == "cancelled"
