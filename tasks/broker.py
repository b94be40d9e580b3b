"""kombu's Redis transport, with one client per channel instead of one per operation.

kombu's Redis channel builds a new `redis.Redis` client for every publish and every ack
(`Channel.conn_or_acquire`); with redis-py 5 and later a client costs ~0.3 ms of CPU to
build (it copies its response-callback table), about half of what publishing a step
message costs. The clients share the channel's connection pool either way, so one client
per channel, rebuilt whenever kombu replaces the pool (after a fork or a lost connection),
sends the same commands over the same connections.

Selected by `broker_transport` for `redis://` broker URLs (tasks/app.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = "tasks.broker:Transport"


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

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
