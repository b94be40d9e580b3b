"""Deploy rollovers: a worker told to stop (SIGTERM, as `docker compose stop` and systemd send)
while it holds steps, and another started after it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tasks.dispatcher import STEP_QUEUE
from tests.conftest import REDIS_URL
from tests.integration.factories import (
    chain,
    make_automation,
    unique_email,
)
from tests.integration.harness import Stack
from tests.integration.markers import CELERY_BACKENDS
from tests.integration.test_worker_loss import TRIGGER, UPDATE, mail_then_update


@contextmanager
def slow_sends_then_a_new_worker(stack: Stack) -> Iterator[None]:
    """SMTP answers after 2 s in the block; after it, sends are fast and a worker runs."""
    stack.sink.slowness = 2.0
    try:
        yield
    finally:
        stack.sink.slowness = 0.0
        stack.start_worker()


def stop_warm(stack: Stack, *, timeout: float = 30) -> int:
    """SIGTERM the worker and wait for it to exit by itself: its exit status."""
    assert stack.worker is not None
    stack.worker.send_signal(signal.SIGTERM)
    status = stack.worker.wait(timeout=timeout)
    stack.worker = None
    return status


@CELERY_BACKENDS
@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_warm_shutdown_mid_send_finishes_every_held_step_once_and_counts_no_loss(
    rt_stack: Stack, pool: str
) -> None:
    """SIGTERM while a send waits on a slow SMTP server and more messages are held: the send
    ends and is recorded, the held messages go back to the queue, nothing counts as a loss."""
    mail_then_update(rt_stack)
    addresses = [unique_email("rollover") for _ in range(4)]
    rt_stack.restart_worker("--pool", pool)
    with slow_sends_then_a_new_worker(rt_stack):
        run_ids = [rt_stack.send("user.created", a).run_ids[0] for a in addresses]
        rt_stack.wait_for(
            lambda: any(rt_stack.outbox(run_id) for run_id in run_ids), what="a send to start"
        )
        assert stop_warm(rt_stack) == 0
        # The sends in hand ended (one per pool process at most); the held messages went back
        # to the queue for the next worker rather than each being run, 2 s apiece, first.
        sent = sum(len(rt_stack.sink.to(address)) for address in addresses)
        assert 1 <= sent <= (1 if pool == "solo" else 2), sent
    for run_id, address in zip(run_ids, addresses, strict=True):
        assert rt_stack.wait_run(run_id).status == "completed"
        mail = rt_stack.steps(run_id)["mail"]
        assert (mail.status, mail.worker_losses, mail.attempt) == ("completed", 0, 1)
        (message,) = rt_stack.sink.to(address)
        (row,) = rt_stack.outbox(run_id)
        assert message["Message-ID"] == f"<{row.id}@acme.test>"


@CELERY_BACKENDS
def test_a_warm_shutdown_puts_a_held_countdown_back_on_the_queue(rt_stack: Stack) -> None:
    steps = [TRIGGER, {"key": "pause", "type": "delay", "config": {"duration": "1 minute"}}, UPDATE]
    make_automation(rt_stack, steps, chain("start", "pause", "after"))
    broker = redis.Redis.from_url(REDIS_URL)
    (run_id,) = rt_stack.send("user.created", unique_email("held")).run_ids
    rt_stack.wait_step(run_id, "pause", "waiting")
    needle = str(run_id).encode()  # in each message's kwargsrepr header, in plain JSON
    rt_stack.wait_for(
        lambda: any(needle in entry for entry in broker.hvals("unacked")),
        what="the worker to hold the countdown",
    )
    try:
        assert stop_warm(rt_stack) == 0
        assert any(needle in entry for entry in broker.lrange(STEP_QUEUE, 0, -1))
    finally:
        rt_stack.start_worker()
    rt_stack.advance(dt.timedelta(minutes=1, seconds=1))
    assert rt_stack.wait_run(run_id).status == "completed"
    assert rt_stack.steps(run_id)["pause"].worker_losses == 0


def pool_children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                found.append(int(entry.name))
    return found


def assert_sent_once_without_loss(stack: Stack, run_id: uuid.UUID, address: str) -> None:
    """The step finished in the worker that was stopping: nothing for the sweeper to take over."""
    mail = stack.steps(run_id)["mail"]
    assert (mail.status, mail.worker_losses, mail.attempt) == ("completed", 0, 1)
    (message,) = stack.sink.to(address)
    (row,) = stack.outbox(run_id)
    assert message["Message-ID"] == f"<{row.id}@acme.test>"


@CELERY_BACKENDS
def test_sigterm_to_every_process_of_the_worker_mid_send_lets_the_step_finish(
    rt_stack: Stack,
) -> None:
    """systemd's default KillMode (control-group) signals the pool children with the parent: a
    child used to die mid-send, its step held by the lease and the death counted as a loss."""
    mail_then_update(rt_stack)
    address = unique_email("group")
    with slow_sends_then_a_new_worker(rt_stack):
        (run_id,) = rt_stack.send("user.created", address).run_ids
        rt_stack.wait_for(lambda: rt_stack.outbox(run_id) != [], what="the send to start")
        assert rt_stack.worker is not None
        children = pool_children(rt_stack.worker.pid)
        rt_stack.worker.send_signal(signal.SIGTERM)
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        assert stop_warm(rt_stack) == 0
        assert_sent_once_without_loss(rt_stack, run_id, address)
    assert rt_stack.wait_run(run_id).status == "completed"


@CELERY_BACKENDS
def test_a_cold_shutdown_mid_send_ends_the_send_before_the_worker_exits(rt_stack: Stack) -> None:
    """SIGQUIT cancels the running tasks with a SIGTERM to their children: the step in progress
    ends first (a send is bounded by the transport's timeout), rather than waiting out its lease
    and counting a worker loss."""
    mail_then_update(rt_stack)
    address = unique_email("cold")
    with slow_sends_then_a_new_worker(rt_stack):
        (run_id,) = rt_stack.send("user.created", address).run_ids
        rt_stack.wait_for(lambda: rt_stack.outbox(run_id) != [], what="the send to start")
        assert rt_stack.worker is not None
        rt_stack.worker.send_signal(signal.SIGQUIT)
        rt_stack.worker.wait(timeout=30)
        rt_stack.worker = None
        assert_sent_once_without_loss(rt_stack, run_id, address)
    assert rt_stack.wait_run(run_id).status == "completed"


@CELERY_BACKENDS
def test_pool_children_recycled_after_every_task_lose_nothing(rt_stack: Stack) -> None:
    """`--max-tasks-per-child` and `--max-memory-per-child`: a child replaced between tasks."""
    mail_then_update(rt_stack)
    rt_stack.restart_worker("--max-tasks-per-child", "1", "--max-memory-per-child", "1")
    try:
        addresses = [unique_email("recycled") for _ in range(6)]
        run_ids = [rt_stack.send("user.created", a).run_ids[0] for a in addresses]
        for run_id, address in zip(run_ids, addresses, strict=True):
            assert rt_stack.wait_run(run_id, timeout=60).status == "completed"
            assert_sent_once_without_loss(rt_stack, run_id, address)
            assert rt_stack.steps(run_id)["after"].worker_losses == 0
    finally:
        rt_stack.restart_worker()
