"""Sends the engine's dispatches as Celery messages, by stable task name."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.connection import Connection

from engine.dispatch import BulkWork, CancelWork, Dispatch, Message
from engine.step_types import reads_on_claim
from tasks import step_messages

STEP_QUEUE = "automations"
SWEEPER_QUEUE = "automations.sweeper"
BULK_TASK = "automations.runs.bulk"
CANCEL_TASK = "automations.runs.cancel"


# The message header naming the run's automation version (Dispatch.version_id): a header, not
# an argument, so that a worker of an earlier release takes the message as it always did.
VERSION_HEADER = "automations_version"


def step_task_name(step_type: str) -> str:
    return f"automations.steps.{step_type}"


def step_headers(item: Dispatch) -> dict[str, str] | None:
    """The headers a step's message carries beyond Celery's: the run's version, for a step
    whose claim reads for it (the step's config gives the read)."""
    if item.version_id is None or not reads_on_claim(item.step_type):
        return None
    return {VERSION_HEADER: str(item.version_id)}


@functools.cache
def _origin(pid: int) -> str:
    """Celery's `origin` header for this process (the host name and the pid): asked of the
    system once per process, not once per publish."""
    return str(anon_nodename())


@dataclass(frozen=True)
class _Held:
    """A broker channel kept by one process for its step messages."""

    pid: int
    connection: Connection
    channel: Any


def _work_task(item: BulkWork | CancelWork) -> tuple[str, dict[str, str]]:
    """The task and arguments of a message that is not a step's."""
    if isinstance(item, BulkWork):
        return BULK_TASK, {"bulk_id": str(item.bulk_id)}
    return CANCEL_TASK, {"automation_id": str(item.automation_id)}


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self.app = app
        # Our Redis transport (tasks/broker.py): step messages are pushed on its lists directly.
        self.direct = app.conf.broker_transport == "tasks.broker:Transport"  # its TRANSPORT
        self._held: _Held | None = None
        self._holding = threading.Lock()

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        if not dispatches:
            return
        if self.direct and all(isinstance(item, Dispatch) for item in dispatches):
            self._push(cast(Sequence[Dispatch], dispatches))
            return
        # One producer (and broker connection) for the lot, not one from the pool per message,
        # and its messages written in one pipelined round trip (kombu's publish batch) rather
        # than one per message. The caller has committed: a failed write raises, as one
        # message would, and the sweeper sends what was committed but not published.
        with self.app.producer_or_acquire() as producer, producer.batch():
            for item in dispatches:
                if isinstance(item, BulkWork | CancelWork):
                    name, kwargs = _work_task(item)
                    self.app.send_task(name, kwargs=kwargs, queue=STEP_QUEUE, producer=producer)
                    continue
                self.app.send_task(
                    step_task_name(item.step_type),
                    kwargs={"run_id": str(item.run_id), "step_key": item.step_key},
                    countdown=item.countdown or None,
                    queue=STEP_QUEUE,
                    producer=producer,
                    headers=step_headers(item),
                )

    def _push(self, dispatches: Sequence[Dispatch]) -> None:
        """The step messages, built from a template, in one round trip."""
        origin = _origin(os.getpid())
        entries = [
            step_messages.encode(
                step_task_name(item.step_type),
                {"run_id": str(item.run_id), "step_key": item.step_key},
                queue=STEP_QUEUE,
                origin=origin,
                countdown=item.countdown,
                headers=step_headers(item),
            )
            for item in dispatches
        ]
        # One LPUSH of them all: each goes to the head in turn, as one LPUSH each would put it,
        # so the consumer's BRPOP takes them in this order; one command to pack and to run, not
        # one per message.
        channel = self._channel()
        try:
            with channel.conn_or_acquire() as client:
                client.lpush(STEP_QUEUE, *entries)
        except channel.connection.connection_errors:
            # Redis restarted or the connection broke: the held channel is opened anew on the
            # next push, and this one is made again the pooled way. Should the first push have
            # landed after all, its messages come twice, which a claim absorbs.
            self._held = None
            self._push_pooled(entries)

    def _push_pooled(self, entries: Sequence[str]) -> None:
        """Queue entries pushed through a producer of the app's pool, which connects again
        under the broker's retry policy (waiting out a Redis restart), as a publish always did;
        a third of a push's CPU more than on the held channel (bench/dispatch_cost.py)."""
        with (
            self.app.producer_or_acquire() as producer,
            producer.channel.conn_or_acquire() as client,
        ):
            client.lpush(STEP_QUEUE, *entries)

    def _channel(self) -> Any:
        """This process's channel for step messages, opened at its first push and kept.

        Taking a producer from the app's pool for each push (as `send_task` does) costs a third
        of a push's CPU: the pool's locks, the producer revived on its channel, its exchange
        copied. The channel's Redis client is shared and thread-safe, and its connection pool
        reconnects by itself after a lost connection; a forked child opens its own.
        """
        held = self._held
        pid = os.getpid()
        if held is None or held.pid != pid:
            with self._holding:
                held = self._held
                if held is None or held.pid != pid:
                    connection = self.app.connection_for_write()
                    held = self._held = _Held(pid, connection, connection.default_channel)
        return held.channel

    def ping(self) -> None:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
