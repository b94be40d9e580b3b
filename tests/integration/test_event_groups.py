"""Consecutive `automations.events.send` messages are ingested in shared transactions
(tasks/event_groups.py), with each message's guarantees: acked after its commit, a refused one
answered alone, nothing lost and nothing ingested twice when the worker is killed mid-group."""

from __future__ import annotations

import os
import re
import signal
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from engine.db import transaction
from models.tables import Event, Run
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import Stack
from tests.integration.markers import POSTGRES_ONLY

SEND = "automations.events.send"
MESSAGES = 150
# The worker shapes that group: one prefork worker with two pool processes, one solo worker.
POOLS = pytest.mark.parametrize(
    "pool", [(), ("--pool", "solo", "-c", "1")], ids=["prefork", "solo"]
)


def automation(stack: Stack) -> None:
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {"key": "tag", "type": "contact_update", "config": {"properties": {"from": "group"}}},
    ]
    make_automation(stack, steps, chain("start", "tag"))


def enqueue(stack: Stack, emails: list[str]) -> None:
    with stack.app.producer_or_acquire() as producer:
        for email in emails:
            stack.app.send_task(
                SEND,
                kwargs={"event": "user.created", "email": email, "payload": {"n": 1}},
                queue="automations",
                producer=producer,
            )


def tally(stack: Stack) -> tuple[int, int, int]:
    """Events, the transactions that wrote them (PostgreSQL's xmin), runs."""
    with transaction(stack.runtime.sessions) as session:
        events = int(session.scalar(select(func.count()).select_from(Event)) or 0)
        written_by = text("CAST(xmin AS text)")
        groups = int(
            session.scalar(select(func.count(func.distinct(written_by))).select_from(Event)) or 0
        )
        runs = int(session.scalar(select(func.count()).select_from(Run)) or 0)
        return events, groups, runs


# An address or a run id, as a message's kwargsrepr header shows it in plain JSON.
MENTIONED = re.compile(rb"[\w.+-]+@[\w.-]+|[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}")


def all_acked(stack: Stack, emails: list[str]) -> bool:
    """None of this test's messages waiting, or delivered and unacknowledged (kombu's Redis
    bookkeeping): its events', and the steps' of their runs. Only this test's: the broker is
    the session's, and a worker holds an earlier test's countdown (a one-minute delay's, say)
    unacknowledged until it is due, which the whole-queue check waited out."""
    ours = {email.encode() for email in emails} | {str(run.id).encode() for run in runs_of(stack)}
    client = redis.Redis.from_url(stack.settings.broker_url)
    try:
        entries = [*client.lrange("automations", 0, -1), *client.hvals("unacked")]
    finally:
        client.close()
    return not any(ours.intersection(MENTIONED.findall(entry)) for entry in entries)


def one_event_per_email(stack: Stack, emails: list[str]) -> None:
    with transaction(stack.runtime.sessions) as session:
        rows = session.execute(
            select(Event.idempotency_key, func.count()).group_by(Event.idempotency_key)
        ).all()
    assert all(n == 1 for _, n in rows)
    assert len(rows) == len(emails)


@POSTGRES_ONLY
@POOLS
def test_waiting_send_messages_are_ingested_in_groups_and_a_refused_one_alone(
    rt_stack: Stack, pool: tuple[str, ...]
) -> None:
    automation(rt_stack)
    emails = [unique_email("grouped") for _ in range(MESSAGES)]
    log = rt_stack.workdir / f"worker-{rt_stack.backend}.log"
    rt_stack.stop_worker()
    try:
        enqueue(rt_stack, emails[: MESSAGES // 2])
        refused = rt_stack.app.send_task(
            SEND,
            kwargs={"event": "user.created", "contact_id": str(uuid.uuid4())},
            queue="automations",
        ).id
        enqueue(rt_stack, emails[MESSAGES // 2 :])
    finally:
        rt_stack.start_worker(*pool)
    rt_stack.wait_for(lambda: tally(rt_stack)[0] == MESSAGES, what="every event ingested")
    rt_stack.wait_for(
        lambda: f"refused (task {refused})" in log.read_text(), what="the refused event logged"
    )
    events, transactions, runs = tally(rt_stack)
    assert (events, runs) == (MESSAGES, MESSAGES)
    # Far fewer transactions than messages.
    assert transactions <= MESSAGES // 10, transactions
    one_event_per_email(rt_stack, emails)
    try:
        rt_stack.wait_for(
            lambda: all(r.status == "completed" for r in runs_of(rt_stack)),
            what="runs to complete",
        )
    finally:
        if pool:
            rt_stack.restart_worker()


def runs_of(stack: Stack) -> list[Run]:
    with transaction(stack.runtime.sessions) as session:
        return list(session.scalars(select(Run)))


SHORT_HEARTBEAT = {
    # What a dead worker held comes back once the next one finds it dead: silent for three
    # heartbeats, with no connection to Redis left (the visibility timeout stays an hour).
    "AUTOMATIONS_BROKER_HEARTBEAT_SECONDS": "1",
}


def every_event_once_then_every_run_completes(stack: Stack, emails: list[str]) -> None:
    stack.wait_for(lambda: tally(stack)[0] == len(emails), timeout=60, what="every event")
    # What the dead worker held comes back, is found ingested already, and is acked.
    stack.wait_for(lambda: all_acked(stack, emails), timeout=60, what="every message acked")
    one_event_per_email(stack, emails)

    def completed() -> bool:
        stack.sweep()  # the killed group's step messages were never published
        return all(r.status == "completed" for r in runs_of(stack))

    stack.wait_for(completed, timeout=40, what="every run to complete")
    assert tally(stack)[2] == len(emails)


def kill_with_pool(pid: int) -> None:
    """SIGKILL a prefork worker and its pool processes, all at once."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for one in [pid, *map(int, children)]:
        os.kill(one, signal.SIGKILL)


def blocked_on_a_lock(stack: Stack) -> bool:
    with transaction(stack.runtime.sessions) as session:
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(session.scalar(text(query)))


@POSTGRES_ONLY
@POOLS
def test_a_worker_killed_while_it_holds_groups_loses_nothing_and_ingests_nothing_twice(
    rt_stack: Stack, pool: tuple[str, ...]
) -> None:
    automation(rt_stack)
    emails = [unique_email("killed") for _ in range(4 * MESSAGES)]
    # A solo worker answers no ping while it writes a group: it is started before the backlog.
    solo = bool(pool)
    rt_stack.stop_worker()
    if solo:
        rt_stack.start_worker(*pool, **SHORT_HEARTBEAT)
    else:
        enqueue(rt_stack, emails)
    locker = create_engine(rt_stack.settings.database_url, poolclass=NullPool)
    try:
        with locker.connect() as conn:
            # A group stuck in the middle of its transaction, the others held in the consumer
            # (prefork) or waiting in Redis (solo).
            conn.execute(text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
            if solo:
                enqueue(rt_stack, emails)
            else:
                rt_stack.start_worker(*pool, **SHORT_HEARTBEAT)
            rt_stack.wait_for(lambda: blocked_on_a_lock(rt_stack), what="a group in flight")
            assert rt_stack.worker is not None
            kill_with_pool(rt_stack.worker.pid)
            rt_stack.worker.wait(timeout=10)
            rt_stack.worker = None
            conn.rollback()
        rt_stack.start_worker(*pool, **SHORT_HEARTBEAT)
        every_event_once_then_every_run_completes(rt_stack, emails)
    finally:
        locker.dispose()
        rt_stack.restart_worker()


@POSTGRES_ONLY
@POOLS
def test_a_process_killed_between_a_groups_commit_and_its_acks_loses_nothing(
    rt_stack: Stack, tmp_path: Path, pool: tuple[str, ...]
) -> None:
    automation(rt_stack)
    emails = [unique_email("killed") for _ in range(MESSAGES)]
    marker = tmp_path / "killed"
    try:
        # The process that reaches the checkpoint first SIGKILLs itself, once: a pool process,
        # which its parent replaces, or the solo worker, which its supervisor starts again.
        rt_stack.restart_worker(
            *pool,
            AUTOMATIONS_FAULT_INJECTION=f"events.group_committed=kill@{marker}",
            **SHORT_HEARTBEAT,
        )
        enqueue(rt_stack, emails)
        rt_stack.wait_for(marker.exists, what="a process killed after a group's commit")
        if pool:
            assert rt_stack.worker is not None
            rt_stack.worker.wait(timeout=10)
            rt_stack.worker = None
            rt_stack.start_worker(*pool, **SHORT_HEARTBEAT)
        every_event_once_then_every_run_completes(rt_stack, emails)
    finally:
        rt_stack.restart_worker()
