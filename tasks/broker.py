"""kombu's Redis transport, with one client per channel instead of one per operation, acks in one
round trip, and a fetch that loses no message when its worker dies (tasks/fetch.py).

kombu's Redis channel builds a new `redis.Redis` client for every publish and every ack
(`Channel.conn_or_acquire`); with redis-py 5 and later a client costs ~0.3 ms of CPU to
build (it copies its response-callback table), about half of what publishing a step
message costs. The clients share the channel's connection pool either way, so one client
per channel, rebuilt whenever kombu replaces the pool (after a fork or a lost connection),
sends the same commands over the same connections.

It can also send many acks in one round trip (`Channel.acks_together`): the worker acks a
group of event messages at once (tasks/event_groups.py), where kombu sends one transaction per
ack.

A message leaves its queue only to be recorded as unacknowledged in the same step, or to move to
an in-flight list of its consumer's own until it is (tasks/fetch.py), where kombu popped it and
recorded it a round trip later. An entry of a queue that is not a message at all (not JSON, or
no `properties` or `delivery_tag` in it: pushed there by something else than kombu) is dropped
with one line, where kombu would stop the worker: delivering it again would fail the same way.

Selected by `broker_transport` for `redis://` broker URLs (tasks/app.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from tasks.fetch import FetchingChannel
from tasks.fetch_qos import FetchingQoS

log = logging.getLogger(__name__)

TRANSPORT = "tasks.broker:Transport"


class QoS(FetchingQoS):
    acks: Any = None  # the pipeline of `Channel.acks_together`, while it is open

    def ack(self, delivery_tag: Any) -> None:
        if self.acks is None:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]
            return
        self._remove_from_indices(delivery_tag, self.acks)
        virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]


class Channel(FetchingChannel):
    QoS = QoS
    _shared_client: Any = None

    @contextmanager
    def acks_together(self) -> Iterator[None]:
        """The acks made inside reach Redis in one round trip, at the end. Should it fail, the
        messages stay in the unacked index and come back after the visibility timeout."""
        with self.conn_or_acquire() as client:
            pipe = client.pipeline()
        qos = self.qos
        qos.acks = pipe
        try:
            yield
        finally:
            qos.acks = None
            try:
                pipe.execute()
            except self.connection.connection_errors as lost:
                log.warning("acks not recorded (%r): those messages will be delivered again", lost)

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()  # type: ignore[no-untyped-call]
        yield shared


class Transport(kombu_redis.Transport):
    Channel = Channel
