"""On PostgreSQL with a real worker: after a mixed workload with faults (duplicate messages, a
worker killed mid-send), the rollup equals a recount of every run and step, and /metrics
counts every step."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, func, select

from api.prometheus import exposition
from engine import content, lifecycle
from engine.bulk import parse_request, start_bulk
from engine.db import transaction
from engine.errors import AutomationsError
from engine.group_commit import commit_group
from engine.ingest import EventRequest, Ingested
from engine.metrics import snapshot
from engine.recovery import replay_run, retry_run
from engine.rollup_check import check_rollup, repair_rollup
from engine.store.rollup import hour_of
from models.enums import BulkAction, TemplateStatus
from models.rollups import RunRollup
from models.tables import Run, RunStep
from tests.integration.factories import (
    make_automation,
    make_contact,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack
from tests.integration.markers import POSTGRES_ONLY
from tests.rollup_recount import recount, rollup

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def branching(stack: Stack, template: str) -> uuid.UUID:
    """kind=mail sends an email; another kind waits a minute; no kind fails the condition."""
    steps = [
        TRIGGER,
        {
            "key": "check",
            "type": "condition",
            "config": {"rule": {"field": "event.kind", "operator": "eq", "value": "mail"}},
        },
        send_email_step("mail", template),
        {"key": "pause", "type": "delay", "config": {"duration": "1 minute"}},
        {"key": "after", "type": "contact_update", "config": {"first_name": "After"}},
    ]
    connections = [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "mail", "type": "condition_met"},
        {"from": "check", "to": "pause", "type": "condition_not_met"},
        {"from": "pause", "to": "after"},
    ]
    return make_automation(stack, steps, connections)


def settle(stack: Stack, run_ids: list[uuid.UUID], **expected: int) -> None:
    def done() -> bool:
        return Counter(stack.run(run_id).status for run_id in run_ids) == Counter(expected)

    stack.wait_for(done, timeout=60, what=f"runs {expected}")


def assert_rollup_is_a_recount(stack: Stack) -> None:
    with transaction(stack.runtime.sessions) as session:
        kept, truth = rollup(session), recount(session)
    assert kept == truth
    assert check_rollup(stack.runtime) == []
    assert check_rollup(stack.runtime, since=stack.clock.now().date()) == []


def send(stack: Stack, kind: str | None, email: str | None = None) -> uuid.UUID:
    result = stack.send("user.created", email or unique_email(), {"kind": kind} if kind else None)
    stack.dispatcher.dispatch(result.dispatches)  # each message delivered twice
    return result.run_ids[0]


@POSTGRES_ONLY
def test_rollup_equals_a_recount_after_a_mixed_workload_with_faults(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    template = make_template(rt_stack, status=TemplateStatus.DRAFT)
    automation_id = branching(rt_stack, template)
    mailed = [send(rt_stack, "mail") for _ in range(4)]  # fail: the template is a draft
    broken = [send(rt_stack, None) for _ in range(2)]  # fail: no `kind`
    waiting = [send(rt_stack, "wait") for _ in range(4)]
    for run_id in waiting:
        rt_stack.wait_step(run_id, "pause", "waiting")
    settle(rt_stack, mailed + broken, failed=6)
    assert_rollup_is_a_recount(rt_stack)

    gone = unique_email("gone")
    make_contact(rt_stack, gone, unsubscribed=True)
    skipped = send(rt_stack, "mail", gone)
    with transaction(rt_stack.runtime.sessions) as session:
        now = rt_stack.clock.now()
        lifecycle.cancel_run(session, automation_id, waiting[0], now=now)
        content.publish_template(session, template, now=now)
        request = parse_request(
            automation_id, BulkAction.RETRY, {"error_code": "template_not_published"}
        )
        bulk = start_bulk(session, request, now=now)
    rt_stack.dispatcher.dispatch(bulk.dispatches)
    rt_stack.dispatcher.dispatch(retry_run(rt_stack.runtime, automation_id, broken[0]).dispatches)
    # The retried run fails again.
    rt_stack.wait_step(broken[0], "check", "failed")
    settle(rt_stack, [*mailed, *broken, skipped], completed=4, failed=2, skipped=1)

    # A worker killed after the outbox row, before the send: the sweeper hands the step on.
    marker = rt_stack.workdir / "rollup-killed"
    marker.unlink(missing_ok=True)
    with rt_stack.faults(f"send_email.before_send=kill@{marker}"):
        killed = send(rt_stack, "mail")
        rt_stack.wait_for(marker.exists, what="the worker to die mid-send")
        rt_stack.wait_step(killed, "mail", "running")
    rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.step_lease_seconds + 1))
    assert rt_stack.wait_run(killed).status == "completed"

    with transaction(rt_stack.runtime.sessions) as session:
        replayed = replay_run(
            session, rt_stack.runtime, automation_id, mailed[0], now=rt_stack.clock.now()
        )
    rt_stack.dispatcher.dispatch(replayed.dispatches)
    rt_stack.dispatcher.dispatch(
        retry_run(rt_stack.runtime, automation_id, waiting[0], from_cancelled=True).dispatches
    )
    rt_stack.wait_step(waiting[0], "pause", "waiting")
    rt_stack.advance(dt.timedelta(minutes=2))
    settle(rt_stack, [*waiting, replayed.run_id, killed], completed=6)
    lifecycle.stop(rt_stack.runtime, rt_stack.dispatcher, automation_id, cancel_runs=True)
    assert_rollup_is_a_recount(rt_stack)


@POSTGRES_ONLY
def test_a_repair_while_steps_run_mends_the_drift_and_loses_no_count(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    automation_id = branching(rt_stack, make_template(rt_stack))
    first = [send(rt_stack, "mail") for _ in range(3)]
    settle(rt_stack, first, completed=3)
    hour = hour_of(rt_stack.clock.now())
    with transaction(rt_stack.runtime.sessions) as session:  # a drift: 4 runs that never were
        session.add(RunRollup(automation_id=automation_id, span=1, hour=hour, shard=99, failed=4))
    repaired: list[int] = []
    stop = threading.Event()

    def repair_while_running() -> None:
        while not stop.is_set():
            repaired.append(len(repair_rollup(rt_stack.runtime)))

    repairer = threading.Thread(target=repair_while_running)
    repairer.start()
    try:
        # The worker writes counts meanwhile: completed sends, failed conditions.
        more = [send(rt_stack, "mail" if n % 2 else None) for n in range(20)]
        settle(rt_stack, more, completed=10, failed=10)
    finally:
        stop.set()
        repairer.join()

    assert repaired[0] == 1 and sum(repaired) == 1, repaired  # the drift, once
    assert_rollup_is_a_recount(rt_stack)


@POSTGRES_ONLY
def test_a_check_since_a_day_leaves_out_the_days_before(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    automation_id = branching(rt_stack, make_template(rt_stack))
    settle(rt_stack, [send(rt_stack, "mail") for _ in range(2)], completed=2)
    hour = hour_of(rt_stack.clock.now())
    earlier = hour - hour % 24 - 1  # the last hour of the day before
    today = rt_stack.clock.now().date()
    for drifted in (earlier, hour):
        with transaction(rt_stack.runtime.sessions) as session:
            session.add(
                RunRollup(automation_id=automation_id, span=1, hour=drifted, shard=99, failed=1)
            )
        if drifted == earlier:
            assert check_rollup(rt_stack.runtime, since=today) == []

    assert [(d.hour, d.counter) for d in check_rollup(rt_stack.runtime, since=today)] == [
        (hour, "failed")
    ]
    assert {d.hour for d in check_rollup(rt_stack.runtime)} == {earlier, hour}
    repair_rollup(rt_stack.runtime)
    assert_rollup_is_a_recount(rt_stack)


@POSTGRES_ONLY
def test_prometheus_counts_every_step(rt_stack: Stack) -> None:
    steps = [TRIGGER, {"key": "tag", "type": "contact_update", "config": {"first_name": "T"}}]
    make_automation(rt_stack, steps, [{"from": "start", "to": "tag"}])
    runs = [send(rt_stack, None) for _ in range(30)]
    settle(rt_stack, runs, completed=30)
    with transaction(rt_stack.runtime.sessions) as session:
        data = snapshot(session, now=rt_stack.clock.now(), sweeper_late_after=60)
        text = exposition(data).decode()
        truth = dict(
            session.execute(
                select(RunStep.step_type, func.count()).group_by(RunStep.step_type)
            ).all()
        )
        runs_total = session.scalar(select(func.count()).select_from(Run))
    assert truth == {"trigger": 30, "contact_update": 30}
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    for kind, count in truth.items():
        for status in ("reached", "completed"):
            name = f'automations_steps{{status="{status}",step_type="{kind}"}}'
            assert (name, float(samples[name])) == (name, count)
    assert float(samples['automations_runs{status="completed"}']) == runs_total
    assert 'automations_run_duration_quantile_seconds{quantile="0.5"}' in samples


@POSTGRES_ONLY
def test_prometheus_counts_steps_past_the_old_sample(rt_stack: Stack) -> None:
    """The step counter once read a sample of the latest 5,000 steps; it reads the rollup now,
    so 5,100 runs (each a trigger that ends it at its event's commit) count 5,100."""
    make_automation(rt_stack, [{**TRIGGER, "config": {"event_name": "sampled"}}], [])
    for _ in range(51):
        requests = [EventRequest("sampled", unique_email()) for _ in range(100)]
        assert all(
            isinstance(outcome, Ingested)
            for outcome in commit_group(rt_stack.runtime, rt_stack.dispatcher, requests)
        )
    with transaction(rt_stack.runtime.sessions) as session:
        data = snapshot(session, now=rt_stack.clock.now(), sweeper_late_after=60)
        triggers = session.scalar(
            select(func.count()).select_from(RunStep).where(RunStep.step_type == "trigger")
        )
    text = exposition(data).decode()
    assert triggers is not None and triggers >= 5100
    for status in ("reached", "completed"):
        name = f'automations_steps{{status="{status}",step_type="trigger"}}'
        assert f"{name} {float(triggers)}" in text.splitlines()


@contextmanager
def statements_of_this_thread(stack: Stack) -> Iterator[list[str]]:
    """The SQL statements this thread executes meanwhile (not the worker's, nor a sweeper's)."""
    statements: list[str] = []
    this_thread = threading.get_ident()

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if threading.get_ident() == this_thread:
            statements.append(statement)

    engine = stack.runtime.sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@POSTGRES_ONLY
def test_an_ingestion_counts_in_its_store_statement_unless_it_resumes_a_wait(
    rt_stack: Stack,
) -> None:
    waiting = {"event_name": "order.paid", "timeout": "2 days"}
    make_automation(
        rt_stack,
        [
            TRIGGER,
            {"key": "await", "type": "wait_for_event", "config": waiting},
            {"key": "thank", "type": "contact_update", "config": {"first_name": "Paid"}},
        ],
        [
            {"from": "start", "to": "await"},
            {"from": "await", "to": "thank", "type": "event_received"},
        ],
    )
    # order.paid starts runs too: the event that resumes a wait also counts runs of its own.
    paid = {"key": "start", "type": "trigger", "config": {"event_name": "order.paid"}}
    tag = {"key": "tag", "type": "contact_update", "config": {"last_name": "Payer"}}
    make_automation(rt_stack, [paid, tag], [{"from": "start", "to": "tag"}])
    with statements_of_this_thread(rt_stack) as statements:
        first = send(rt_stack, None)  # the automation's graph, read once per process
        statements.clear()
        email = unique_email()
        run_id = send(rt_stack, None, email=email)
        # No wait to resume: the contacts and the listeners, then one statement for the rest,
        # the rollup's counts included; nothing written at the commit.
        assert len(statements) == 2, [" ".join(sql.split())[:60] for sql in statements]
        rt_stack.wait_step(run_id, "await", "waiting")
        statements.clear()
        resumed = rt_stack.send("order.paid", email)
        assert resumed.resumed == [(run_id, "await")]
        # A wait resumed: its step is locked after the store statement, the counts after it.
        assert len(statements) > 2
        rt_stack.dispatcher.dispatch(resumed.dispatches)
        rt_stack.wait_step(first, "await", "waiting")
        settle(rt_stack, [run_id, *resumed.run_ids], completed=2)
    assert_rollup_is_a_recount(rt_stack)


@POSTGRES_ONLY
def test_keyed_events_count_in_the_store_statement_unless_a_key_is_taken(rt_stack: Stack) -> None:
    steps = [TRIGGER, {"key": "tag", "type": "contact_update", "config": {"first_name": "K"}}]
    make_automation(rt_stack, steps, [{"from": "start", "to": "tag"}])

    def ingest(*keys: str) -> list[Ingested | AutomationsError]:
        requests = [EventRequest("user.created", unique_email(), None, None, key) for key in keys]
        return commit_group(rt_stack.runtime, rt_stack.dispatcher, requests)

    ingest("warm")  # the automation's graph, read once per process
    with statements_of_this_thread(rt_stack) as statements:
        (fresh,) = ingest("fresh")
        # New keys: the listeners with the keys, the contacts, then one statement for the rest.
        assert len(statements) == 3, [" ".join(sql.split())[:60] for sql in statements]
        statements.clear()
        # A key given twice: the statement skips the second event, so it does not count; the
        # counts of what it wrote are upserted before the commit, one statement more.
        again = ingest("twice", "twice", "other")
        assert len(statements) == 4, [" ".join(sql.split())[:60] for sql in statements]
    assert isinstance(fresh, Ingested)
    assert [isinstance(outcome, Ingested) for outcome in again] == [True, True, True]
    runs = [run for o in (fresh, *again) if isinstance(o, Ingested) for run in o.run_ids]
    assert len(runs) == 3  # the second "twice" is a duplicate of the first
    settle(rt_stack, runs, completed=3)
    assert_rollup_is_a_recount(rt_stack)
