"""A stop that cancels its runs while an event or a deletion takes steps of them (PostgreSQL).

A stop with `cancel_runs` cancels every unfinished step of its runs in one statement, in the
order of its plan (through the steps' primary key: by run id). An event for a contact resumes
the contact's waits one at a time, oldest first; a contact_delete step holds its own step, then
takes the waits of its contact's other runs. Either can take two steps of the stopped runs in
the order opposite to the stop's: unless the stop takes the runs' contacts first, as they do,
each holds a step that the other one needs. While it waits, the stop must not hold its
automation against the key-share lock that a run's foreign key takes when a step writes the
run's row a second time in its transaction (a contact_delete step does).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

from engine import contacts, sweeper
from engine.db import transaction
from engine.dispatch import NullDispatcher
from engine.executor import execute_step
from engine.lifecycle import stop
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import Stack
from tests.integration.test_contact_races import runtime as worker
from tests.integration.test_contact_races import started_run, wait_until_blocked
from tests.integration.test_races import T0, Gate, ingest, runtime, wait_automation
from tests.patience import patience

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

    stopping = pool.submit(
        stop, runtime(rt_stack, later), NullDispatcher(), automation_id, cancel_runs=True
    )
    wait_until_blocked(rt_stack)
    gate.release.set()
    resumed = sending.result(timeout=patience(20)).resumed
    stopping.result(timeout=patience(20))

    assert sorted(resumed) == [(run_id, "await_paid") for run_id in runs]
    for run_id in runs:
        assert rt_stack.run(run_id).status == "cancelled"
        steps = rt_stack.steps(run_id)
        assert steps["await_paid"].status == "completed"
        assert steps["paid"].status == "cancelled"


def stop_cancelling(stack: Stack, automation_id: uuid.UUID) -> None:
    stop(runtime(stack, T0), NullDispatcher(), automation_id, cancel_runs=True)


def name_contact(stack: Stack, email: str, first_name: str) -> None:
    with transaction(stack.runtime.sessions) as session:
        limits = stack.runtime.json_limits
        contacts.update_contact(session, email, {"first_name": first_name}, now=T0, limits=limits)


def test_a_stop_cancelling_a_run_whose_contact_delete_step_is_under_way(
    rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    """The stop waits for the step, holding its automation; the step's run row, written twice
    in its transaction (its contact's deletion sets it NULL, then its end), has its foreign
    key checked again, which share-locks the automation's key: the stop must not hold it
    against that."""
    step = {"key": "erase", "type": "contact_delete"}
    run_id = started_run(rt_stack, step, unique_email())
    gate = Gate("contact_delete.handler")  # the contact, the step and its run held
    executing = pool.submit(execute_step, worker(rt_stack, gate), run_id, "erase")
    assert gate.reached.wait(10)

    stopping = pool.submit(stop_cancelling, rt_stack, automation_id_of(rt_stack, run_id))
    wait_until_blocked(rt_stack)
    gate.release.set()
    executing.result(timeout=patience(20))
    stopping.result(timeout=patience(20))

    erase = rt_stack.steps(run_id)["erase"]
    assert (erase.status, erase.error) == ("completed", None)
    # The step committed first and ended its run (its contact gone): nothing left to cancel.
    assert rt_stack.steps(run_id)["pause"].status == "skipped"
    assert rt_stack.run(run_id).status == "completed"


def test_a_stop_cancelling_runs_while_a_contact_delete_step_of_one_erases_their_contact(
    rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    """Two runs of one contact: the one with the smaller id waits for an event, the other is
    at its contact_delete step. The stop takes the wait first, then waits for the step held
    by its worker, whose deletion of the contact then wakes the contact's waits."""
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "go"}},
        {
            "key": "check",
            "type": "condition",
            "config": {"rule": {"field": "contact.first_name", "operator": "eq", "value": "Erase"}},
        },
        {"key": "erase", "type": "contact_delete"},
        {"key": "await", "type": "wait_for_event", "config": {"event_name": "order.paid"}},
    ]
    connections = [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "erase", "type": "condition_met"},
        {"from": "check", "to": "await", "type": "condition_not_met"},
    ]
    automation_id = make_automation(rt_stack, steps, connections)
    email = unique_email()
    waiting, erasing = sorted(ingest(worker(rt_stack), "go", email).run_ids[0] for _ in range(2))
    for run_id in (waiting, erasing):
        execute_step(worker(rt_stack), run_id, "start")
    name_contact(rt_stack, email, "Wait")
    execute_step(worker(rt_stack), waiting, "check")
    execute_step(worker(rt_stack), waiting, "await")
    assert rt_stack.steps(waiting)["await"].status == "waiting"
    name_contact(rt_stack, email, "Erase")
    execute_step(worker(rt_stack), erasing, "check")
    gate = Gate("contact_delete.handler")  # the contact, the step and its run held
    executing = pool.submit(execute_step, worker(rt_stack, gate), erasing, "erase")
    assert gate.reached.wait(10)

    stopping = pool.submit(stop_cancelling, rt_stack, automation_id)
    wait_until_blocked(rt_stack)
    gate.release.set()
    executing.result(timeout=patience(20))
    stopping.result(timeout=patience(20))

    erase = rt_stack.steps(erasing)["erase"]
    assert (erase.status, erase.error) == ("completed", None)
    assert rt_stack.run(erasing).status == "completed"  # ended before the stop took it
    assert rt_stack.steps(waiting)["await"].status == "cancelled"
    assert rt_stack.run(waiting).status == "cancelled"


def waiting_for_locks(stack: Stack) -> int:
    """How many sessions of the test database wait for a lock."""
    with stack.runtime.sessions() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar_one()
        )


def abandoned_at_the_bound(stack: Stack, run_id: uuid.UUID, lease_ended: dt.datetime) -> None:
    """The run's `pause` step as a worker that died running it leaves it, its death the last
    one the bound allows: the sweeper's takeover fails it, and its run."""
    with transaction(stack.runtime.sessions) as session:
        session.execute(
            text(
                "UPDATE run_steps SET status = 'running', attempt = 1, lost_attempt = NULL,"
                " worker_losses = :losses, lease_expires_at = :lease_ended, dispatched_at = NULL"
                " WHERE run_id = :id AND step_key = 'pause'"
            ),
            {
                "id": run_id,
                "losses": stack.settings.step_max_worker_losses - 1,
                "lease_ended": lease_ended,
            },
        )


def test_the_sweeper_failing_two_runs_of_a_contact_being_deleted(
    rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    """The sweeper fails the steps whose workers died once too often, each with its run; the
    deletion of their contact locks its runs in id order. Taken in the order of their leases,
    the sweeper would hold the run with the greater id while it waits for the other, which the
    deletion holds while it waits for the first."""
    pause = {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}}
    trigger = {"key": "start", "type": "trigger", "config": {"event_name": "go"}}
    make_automation(rt_stack, [trigger, pause], chain("start", "pause"))
    email = unique_email()
    first, second = sorted(ingest(worker(rt_stack), "go", email).run_ids[0] for _ in range(2))
    # The lease of the run with the greater id ran out first: the sweeper reads it first.
    abandoned_at_the_bound(rt_stack, first, T0 - dt.timedelta(seconds=1))
    abandoned_at_the_bound(rt_stack, second, T0 - dt.timedelta(seconds=2))

    def delete() -> uuid.UUID:
        with transaction(rt_stack.runtime.sessions) as session:
            return contacts.delete_contact(session, email, now=T0)

    # The run with the smaller id held a moment, so that the deletion waits for it first.
    deleting, sweeping = while_run_held(rt_stack, pool, first, delete, sweep_once(rt_stack))
    deleting.result(timeout=patience(20))
    sweeping.result(timeout=patience(20))

    assert_failed_by_worker_losses(rt_stack, first, second)


def sweep_once(stack: Stack) -> Callable[[], None]:
    sweeper_rt = worker(stack)

    def sweep() -> None:
        with transaction(sweeper_rt.sessions) as session:
            sweeper.sweep(session, sweeper_rt, now=T0)

    return sweep


def while_run_held(
    stack: Stack,
    pool: ThreadPoolExecutor,
    run_id: uuid.UUID,
    first: Callable[[], Any],
    then: Callable[[], Any],
) -> tuple[Future[Any], Future[Any]]:
    """`first`, then `then`, each on a thread once the one before waits for a lock, while a
    transaction of the test holds the run."""
    with transaction(stack.runtime.sessions) as session:
        session.execute(text("SELECT 1 FROM runs WHERE id = :id FOR UPDATE"), {"id": run_id})
        started = pool.submit(first)
        wait_until_blocked(stack)
        following = pool.submit(then)
        stack.wait_for(
            lambda: waiting_for_locks(stack) == 2, timeout=10, what="both to wait for a lock"
        )
    return started, following


def assert_failed_by_worker_losses(stack: Stack, *run_ids: uuid.UUID) -> None:
    for run_id in run_ids:
        pause = stack.steps(run_id)["pause"]
        assert (pause.status, pause.error and pause.error["code"]) == ("failed", "worker_lost")
        assert stack.run(run_id).status == "failed"


def test_the_sweeper_failing_two_runs_of_an_automation_being_stopped(
    rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    """The stop cancelled its runs in one statement, which locked them in its plan's order (the
    table's: the first inserted first); the sweeper failed its runs in the order of their
    leases. The sweeper takes the second run first here, and the stop the first."""
    pause = {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}}
    trigger = {"key": "start", "type": "trigger", "config": {"event_name": "go"}}
    automation_id = make_automation(rt_stack, [trigger, pause], chain("start", "pause"))
    inserted_first, inserted_second = (
        ingest(worker(rt_stack), "go", unique_email()).run_ids[0] for _ in range(2)
    )
    abandoned_at_the_bound(rt_stack, inserted_first, T0 - dt.timedelta(seconds=1))
    abandoned_at_the_bound(rt_stack, inserted_second, T0 - dt.timedelta(seconds=2))

    sweeping, stopping = while_run_held(
        rt_stack,
        pool,
        inserted_second,
        sweep_once(rt_stack),
        lambda: stop_cancelling(rt_stack, automation_id),
    )
    sweeping.result(timeout=patience(20))
    stopping.result(timeout=patience(20))

    # The stop's mark commits while the sweeper waits: a step failed from a statement that
    # began before it, or found its run cancelled (being cancelled) from one that began after.
    for run_id in (inserted_first, inserted_second):
        pause, run = rt_stack.steps(run_id)["pause"], rt_stack.run(run_id)
        assert (pause.status, pause.error and pause.error["code"], run.status) in {
            ("failed", "worker_lost", "failed"),
            ("cancelled", None, "cancelled"),
        }
