"""Recovery on every stack, and under faults: a bulk retry worked by the embedded executor or
Celery, a bulk message lost and found by the sweeper, a retry race settled by the database,
and a worker killed in the middle of a bulk retry of a thousand runs."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, func, select

from engine import content, lifecycle
from engine.bulk import parse_request, start_bulk, work_chunk
from engine.clock import FrozenClock
from engine.db import transaction
from engine.dispatch import KeptDispatcher
from engine.ingest import EventRequest, ingest_events
from engine.recovery import RetryConflict, retry_run
from engine.runtime import create_runtime
from models.enums import BulkAction, TemplateStatus
from models.tables import BulkOperation, Run
from tests.integration.factories import (
    chain,
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import ApiServer, Stack
from tests.integration.markers import POSTGRES_ONLY
from tests.integration.test_dashboard_hostile_input import csrf_token, signed_in
from tests.integration.test_races import Gate, blocked_on_lock, runtime

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def failing_automation(stack: Stack) -> tuple[uuid.UUID, str]:
    """An automation whose email step fails until its template is published."""
    make_domain(stack)
    template_id = make_template(stack, status=TemplateStatus.DRAFT)
    steps = [TRIGGER, send_email_step("hello", template_id)]
    return make_automation(stack, steps, chain("start", "hello")), template_id


def run_statuses(stack: Stack, automation_id: uuid.UUID) -> Counter[str]:
    with transaction(stack.runtime.sessions) as session:
        rows = session.execute(
            select(Run.status, func.count())
            .where(Run.automation_id == automation_id)
            .group_by(Run.status)
        )
        return Counter({status: count for status, count in rows})


def fail_runs(stack: Stack, automation_id: uuid.UUID, count: int) -> list[str]:
    """`count` runs that failed at their email step; their addresses."""
    emails = [unique_email("rescue") for _ in range(count)]
    for start in range(0, count, 100):
        requests = [EventRequest("user.created", email) for email in emails[start : start + 100]]
        with transaction(stack.runtime.sessions) as session:
            results = ingest_events(session, stack.runtime, requests, now=stack.clock.now())
        stack.dispatcher.dispatch([d for result in results for d in result.dispatches])
    stack.wait_for(
        lambda: run_statuses(stack, automation_id)["failed"] == count,
        timeout=120,
        what=f"{count} failed runs",
    )
    return emails


def publish(stack: Stack, template_id: str) -> None:
    with transaction(stack.runtime.sessions) as session:
        content.publish_template(session, template_id, now=stack.clock.now())


def start(stack: Stack, automation_id: uuid.UUID, *, send: bool = True) -> BulkOperation:
    request = parse_request(automation_id, BulkAction.RETRY, {})
    with transaction(stack.runtime.sessions) as session:
        started = start_bulk(session, request, now=stack.clock.now())
    if send:
        stack.dispatcher.dispatch(started.dispatches)
    return started.bulk


def bulk_state(stack: Stack, bulk_id: uuid.UUID) -> BulkOperation:
    with transaction(stack.runtime.sessions) as session:
        found = session.get(BulkOperation, bulk_id)
        assert found is not None
        return found


def test_a_bulk_retry_completes_every_run_on_every_stack(rt_stack: Stack) -> None:
    automation_id, template_id = failing_automation(rt_stack)
    emails = fail_runs(rt_stack, automation_id, 120)
    publish(rt_stack, template_id)

    bulk = start(rt_stack, automation_id)
    assert bulk.matched == 120
    rt_stack.wait_for(lambda: bulk_state(rt_stack, bulk.id).status == "completed", timeout=60)
    rt_stack.wait_for(lambda: run_statuses(rt_stack, automation_id)["completed"] == 120, timeout=60)
    assert bulk_state(rt_stack, bulk.id).done == 120
    assert all(len(rt_stack.sink.to(email)) == 1 for email in emails)


def test_a_lost_bulk_message_is_sent_again_by_the_sweeper(rt_stack: Stack) -> None:
    automation_id, template_id = failing_automation(rt_stack)
    fail_runs(rt_stack, automation_id, 3)
    publish(rt_stack, template_id)

    bulk = start(rt_stack, automation_id, send=False)  # committed, then the message was lost
    rt_stack.advance(dt.timedelta(seconds=1))
    assert bulk_state(rt_stack, bulk.id).status == "running"  # not stale yet: nothing resent
    rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.stale_after_seconds + 1))
    rt_stack.wait_for(lambda: bulk_state(rt_stack, bulk.id).status == "completed")
    rt_stack.wait_for(lambda: run_statuses(rt_stack, automation_id)["completed"] == 3)


@POSTGRES_ONLY
@pytest.mark.parametrize("action", [BulkAction.RETRY, BulkAction.REPLAY])
def test_a_bulk_chunk_holds_its_automation_once_for_all_its_runs(
    rt_stack: Stack, action: BulkAction
) -> None:
    automation_id, template_id = failing_automation(rt_stack)
    fail_runs(rt_stack, automation_id, 4)
    publish(rt_stack, template_id)
    request = parse_request(automation_id, action, {})
    with transaction(rt_stack.runtime.sessions) as session:
        bulk = start_bulk(session, request, now=rt_stack.clock.now()).bulk
    statements: list[str] = []
    db_engine = rt_stack.runtime.sessions.kw["bind"]

    def record(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        statements.append(sql)

    event.listen(db_engine, "before_cursor_execute", record)
    try:
        work_chunk(rt_stack.runtime, bulk.id)
    finally:
        event.remove(db_engine, "before_cursor_execute", record)

    assert bulk_state(rt_stack, bulk.id).done == 4
    holds = [sql for sql in statements if "FROM automations" in sql and "FOR SHARE" in sql]
    assert len(holds) == 1


@POSTGRES_ONLY
def test_of_two_retries_racing_one_takes_effect(rt_stack: Stack) -> None:
    make_domain(rt_stack, verified=False)
    steps = [TRIGGER, send_email_step("hello", make_template(rt_stack))]
    automation_id = make_automation(rt_stack, steps, chain("start", "hello"))
    (run_id,) = rt_stack.send("user.created", unique_email("race")).run_ids
    assert rt_stack.wait_run(run_id).status == "failed"

    read, go_on = threading.Event(), threading.Event()

    def pause_after_reading(name: str) -> None:
        if name == "retry.read":
            read.set()
            assert go_on.wait(10)

    now = rt_stack.clock.now()
    slow = create_runtime(rt_stack.settings, clock=FrozenClock(now), checkpoint=pause_after_reading)
    fast = create_runtime(rt_stack.settings, clock=FrozenClock(now))
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(retry_run, slow, automation_id, run_id)
        assert read.wait(10)
        # The second request reads and writes while the first holds what it read.
        retry_run(fast, automation_id, run_id)
        go_on.set()
        with pytest.raises(RetryConflict, match="at the same time"):
            first.result(timeout=10)
    assert rt_stack.run(run_id).retries == 1


@POSTGRES_ONLY
def test_the_same_bulk_request_twice_at_once_starts_one_operation(rt_stack: Stack) -> None:
    automation_id, template_id = failing_automation(rt_stack)
    fail_runs(rt_stack, automation_id, 3)
    publish(rt_stack, template_id)
    request = parse_request(automation_id, BulkAction.RETRY, {})

    def start_again() -> uuid.UUID:
        with transaction(rt_stack.runtime.sessions) as session:
            return start_bulk(session, request, now=rt_stack.clock.now()).bulk.id

    with ThreadPoolExecutor(max_workers=1) as pool:
        with transaction(rt_stack.runtime.sessions) as session:
            first = start_bulk(session, request, now=rt_stack.clock.now())
            # The second request arrives while the first has not committed yet.
            second = pool.submit(start_again)
            with pytest.raises(TimeoutError):
                second.result(timeout=1)
        rt_stack.dispatcher.dispatch(first.dispatches)
        assert second.result(timeout=10) == first.bulk.id
    rt_stack.wait_for(lambda: bulk_state(rt_stack, first.bulk.id).status == "completed")
    assert bulk_state(rt_stack, first.bulk.id).done == 3


@POSTGRES_ONLY
@pytest.mark.timeout(400)
def test_a_worker_killed_in_a_bulk_retry_of_a_thousand_runs_loses_and_repeats_nothing(
    rt_stack: Stack,
) -> None:
    automation_id, template_id = failing_automation(rt_stack)
    emails = fail_runs(rt_stack, automation_id, 1000)
    publish(rt_stack, template_id)
    bulk = start(rt_stack, automation_id)
    rt_stack.wait_for(lambda: bulk_state(rt_stack, bulk.id).done >= 200, timeout=60)

    marker = rt_stack.workdir / "killed-bulk.before_commit"
    marker.unlink(missing_ok=True)
    # The next chunk to reach its commit dies just before it.
    with rt_stack.faults(f"bulk.before_commit=kill@{marker}"):
        rt_stack.wait_for(marker.exists, timeout=60, what="the worker to die in a bulk chunk")
        rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.stale_after_seconds + 1))
        rt_stack.wait_for(lambda: bulk_state(rt_stack, bulk.id).status == "completed", timeout=120)
        rt_stack.wait_for(
            lambda: run_statuses(rt_stack, automation_id)["completed"] == 1000, timeout=180
        )

    done = bulk_state(rt_stack, bulk.id)
    assert (done.matched, done.done, done.skipped, done.failed) == (1000, 1000, 0, 0)
    with transaction(rt_stack.runtime.sessions) as session:
        retries = Counter(
            session.scalars(select(Run.retries).where(Run.automation_id == automation_id))
        )
    assert retries == Counter({1: 1000})  # every run retried exactly once
    # Every email sent, none twice (each message's header parsed once: a thousand of them).
    recipients = Counter(str(message["To"]) for message in list(rt_stack.sink.messages))
    assert Counter(recipients[email] for email in emails) == Counter({1: 1000})


@POSTGRES_ONLY
def test_a_stop_cancelling_runs_waits_for_a_bulk_chunk_under_way_then_ends_its_operation(
    rt_stack: Stack,
) -> None:
    automation_id, template_id = failing_automation(rt_stack)
    fail_runs(rt_stack, automation_id, 5)
    publish(rt_stack, template_id)
    bulk = start(rt_stack, automation_id, send=False)
    gate = Gate("bulk.before_commit")  # the chunk holds its automation, then its operation
    with ThreadPoolExecutor(max_workers=2) as pool:
        chunk = pool.submit(
            work_chunk, runtime(rt_stack, rt_stack.clock.now(), gate), bulk.id, size=2
        )
        assert gate.reached.wait(10)
        stopping = pool.submit(
            lifecycle.stop, rt_stack.runtime, KeptDispatcher(), automation_id, cancel_runs=True
        )
        rt_stack.wait_for(lambda: blocked_on_lock(rt_stack), what="the stop to wait for the chunk")
        gate.release.set()
        chunk.result(timeout=20)
        stopping.result(timeout=20)

    # The chunk's two runs were retried, then cancelled with the others in flight; the three it
    # had not reached were left failed, and the operation ended with the stop.
    ended = bulk_state(rt_stack, bulk.id)
    assert (ended.status, ended.done, ended.skipped) == ("completed", 2, 3)
    assert work_chunk(rt_stack.runtime, bulk.id) == []  # its next chunk's message: nothing to do
    assert run_statuses(rt_stack, automation_id) == Counter({"failed": 3, "cancelled": 2})


@POSTGRES_ONLY
def test_the_dashboard_cancels_a_bulk_operation(rt_stack: Stack, api_server: ApiServer) -> None:
    automation_id, _ = failing_automation(rt_stack)
    fail_runs(rt_stack, automation_id, 3)
    operation = start(rt_stack, automation_id, send=False)  # no worker takes it: it runs on
    page = f"/dashboard/automations/{automation_id}/runs/retries/{operation.id}"
    with signed_in(api_server) as browser:
        shown = browser.get(page).text
        assert "Cancel this operation" in shown
        cancelled = browser.post(f"{page}/cancel", data={"csrf_token": csrf_token(shown)})
        assert cancelled.status_code == 303, cancelled.text
        assert cancelled.headers["location"].endswith("?notice=bulk_cancelled")
        after = browser.get(f"{page}?notice=bulk_cancelled").text
        assert "The operation is cancelled" in after and "Cancel this operation" not in after
        refused = browser.post(f"{page}/cancel", data={"csrf_token": csrf_token(after)})
        assert refused.status_code == 303  # cancelled already: answered as it is
    ended = bulk_state(rt_stack, operation.id)
    assert (ended.status, ended.done, ended.skipped) == ("cancelled", 0, 3)
    assert run_statuses(rt_stack, automation_id) == Counter({"failed": 3})
