"""Consecutive `automations.events.send` messages ingested together, in one transaction.

A worker hands each message of a task to that task's strategy (celery/worker/strategy.py).
The one given here to `automations.events.send` holds ready messages in the consumer instead,
and hands them to the pool as one job when 100 are held (a batch's bound,
engine/group_commit.py), or when no message arrived for `GAP` seconds (the queue is drained)
and a pool process is free of groups. While every pool process writes a group, the messages
that arrive wait for the first to finish, as the job would have waited in the pool's queue,
and go as the next group: the busier the writers, the bigger the groups (group commit), so a
backlog drains in few transactions however slowly the consumer reads it. The job ingests
the group with `commit_group`; each message is acked after that commit, a refused event does
not hold the others back, and a message the group could not settle (malformed, or the whole
group failed: the database or the broker away, the pool process killed) goes its own way
through Celery's default strategy, with the task's retries, as it would without grouping.

Held messages are unacknowledged: a worker killed while it holds them loses nothing (the
broker delivers them again) and ingests nothing twice (every event has an idempotency key, the
producer's or `celery-task:<task id>`). The consumer's prefetch (`worker_prefetch_multiplier`
x concurrency) is raised by one per held message, up to `MAX_GROUP` x (concurrency + 1): a
group being written per pool process and the next one filling, whatever the step tasks that
share the queue hold.

A solo worker (`--pool solo`) groups too: its one process writes each group in the consumer's
thread and reads no message meanwhile; a backlog waits in Redis and is read, a message per
round trip, into the next group, which goes when full or when the queue is drained.

Messages with an ETA (a retry's countdown) or an expiry, revoked ones, and every message on a
worker without an event loop or with another pool than prefork or solo take the default
strategy, one task execution each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.concurrency.solo import TaskPool as SoloPool
from celery.worker.strategy import default as default_strategy

from engine.group_commit import MAX_GROUP
from tasks.poison import CheckedTask
from tasks.redaction import shown_kwargs

log = logging.getLogger(__name__)

# Flush when no message arrived for this long: the consumer reads one message per round trip
# to Redis, well under a millisecond apart while a backlog drains.
GAP = 0.002

# A message's kwargs in, its answer out (None: the message must go alone).
IngestGroup = Callable[[list[tuple[str, dict[str, Any]]]], list[dict[str, Any] | None]]


class GroupedTask(CheckedTask):
    """The base of a task whose consecutive messages are ingested as groups (once checked)."""

    inner_strategy = "tasks.event_groups:grouped_strategy"
    ingest_group: IngestGroup


def grouped_base(ingest_group: IngestGroup) -> type[GroupedTask]:
    """A task base whose groups go to `ingest_group` (run in a pool process)."""
    return type("GroupedSendTask", (GroupedTask,), {"ingest_group": staticmethod(ingest_group)})


def run_group(task: GroupedTask, messages: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """The pool job: each message's answer, or None for all when the group failed."""
    try:
        return task.ingest_group(messages)
    except Exception as failed:  # the database or the broker: each message retries alone
        log.warning("a group of %d events failed (%r); each goes alone", len(messages), failed)
        return [None] * len(messages)


@dataclass
class _Held:
    message: Any
    ack: Any
    reject: Any
    callbacks: Any
    task_id: str
    kwargs: dict[str, Any]
    raised: Any  # the consumer's QoS, raised by one for this message; None if not


def _acks_together(channels: set[Any]) -> AbstractContextManager[Any]:
    """One round trip for the acks of a group, where the channel can (tasks/broker.py)."""
    [channel] = channels if len(channels) == 1 else [None]
    together = getattr(channel, "acks_together", None)
    return together() if together is not None else nullcontext()


def grouped_strategy(task: GroupedTask, app: Celery, consumer: Any, **options: Any) -> Any:
    """Celery's strategy hook: the message handler of this task in this consumer."""
    single = default_strategy(task, app, consumer, **options)
    if consumer.hub is None or not isinstance(consumer.pool, PreforkPool | SoloPool):
        # Other pools call back from other threads. A solo worker writes a group in the
        # consumer's own thread, its next fetch outstanding meanwhile: a message Redis handed
        # to that fetch stays in Redis until the consumer records it (tasks/broker.py), so a
        # worker killed while it writes loses none.
        return single
    return _Groups(task, consumer, single).on_message


class _Groups:
    """The messages held by one consumer, and the groups it has in the pool."""

    def __init__(self, task: GroupedTask, consumer: Any, single: Any) -> None:
        self.task = task
        self.consumer = consumer
        self.single = single
        self.held: list[_Held] = []
        self.holding = 0  # held here or in a group not yet settled
        self.writing = 0  # groups in the pool, not yet settled
        self.limit = MAX_GROUP * (self._processes() + 1)
        self.last = 0.0
        self.timer: Any = None

    def on_message(self, message: Any, body: Any, ack: Any, reject: Any, callbacks: Any) -> Any:
        headers = message.headers or {}
        task_id = headers.get("id")
        if (
            body is not None  # protocol 1
            or not isinstance(task_id, str)
            or headers.get("eta")
            or headers.get("expires")
            or task_id in self.consumer.controller.state.revoked
        ):
            return self.single(message, body, ack, reject, callbacks)
        payload = message.payload
        if not (isinstance(payload, list | tuple) and len(payload) == 3):
            return self.single(message, body, ack, reject, callbacks)
        args, kwargs, _ = payload
        if args or not isinstance(kwargs, dict):
            return self.single(message, body, ack, reject, callbacks)
        self._event("task-received", task_id, name=self.task.name, kwargs=shown_kwargs(kwargs))
        raised = None
        if self.holding < self.limit:
            raised = self.consumer.qos
            raised.increment_eventually()
        self.held.append(_Held(message, ack, reject, callbacks, task_id, kwargs, raised))
        self.holding += 1
        self.last = time.monotonic()
        if len(self.held) >= MAX_GROUP:
            self._flush()
        elif self.timer is None and not self._all_writing():
            self.timer = self.consumer.hub.call_later(GAP, self._on_timer)
        return None

    def _processes(self) -> int:
        return getattr(self.consumer.pool, "limit", None) or 1

    def _all_writing(self) -> bool:
        """Every pool process has a group: what is held goes when the first one settles."""
        return self.writing >= self._processes()

    def _on_timer(self) -> None:
        self.timer = None
        now = time.monotonic()
        if now - self.last < GAP:
            self.timer = self.consumer.hub.call_later(GAP - (now - self.last), self._on_timer)
        elif self.held and not self._all_writing():
            self._flush()

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        group, self.held = self.held, []
        self.writing += 1
        began = time.monotonic()
        self.consumer.pool.apply_async(
            run_group,
            (self.task, [(one.task_id, one.kwargs) for one in group]),
            accept_callback=lambda pid, _: self._started(group, pid),
            # A solo pool answers a BaseException of the job with an ExceptionInfo.
            callback=lambda answers: self._settle(
                group, answers if isinstance(answers, list) else [None] * len(group), began
            ),
            error_callback=lambda failed: self._settle(group, [None] * len(group), began),
        )

    def _started(self, group: list[_Held], pid: int) -> None:
        for one in group:
            self._event("task-started", one.task_id, pid=pid)

    def _settle(self, group: list[_Held], answers: list[Any], began: float) -> None:
        """After the group's commit: ack what it settled, hand the others to the default path."""
        runtime = time.monotonic() - began
        settled = [
            (one, answer) for one, answer in zip(group, answers, strict=True) if answer is not None
        ]
        with _acks_together({one.message.channel for one, _ in settled}):
            for one, answer in settled:
                one.message.ack_log_error(log, self.consumer.connection_errors)
                self._event("task-succeeded", one.task_id, result=repr(answer), runtime=runtime)
        alone = 0
        for one, answer in zip(group, answers, strict=True):
            if answer is None:
                alone += 1
                self.single(one.message, None, one.ack, one.reject, one.callbacks)
        log.info(
            "%d %s messages ingested in one transaction in %.3f s%s",
            len(group) - alone,
            self.task.name,
            runtime,
            f" ({alone} went alone)" if alone else "",
        )
        self.holding -= len(group)
        self.writing -= 1
        if self.held and self.timer is None:
            self._flush()  # what arrived while every process wrote, to the one now free
        # After a reconnection the consumer has a new QoS, which these never raised.
        release = sum(1 for one in group if one.raised is self.consumer.qos)
        if release:
            self.consumer.qos.decrement_eventually(release)

    def _event(self, kind: str, task_id: str, **fields: Any) -> None:
        eventer = self.consumer.event_dispatcher
        if eventer is not None and eventer.enabled and self.task.send_events:
            eventer.send(kind, uuid=task_id, **fields)
