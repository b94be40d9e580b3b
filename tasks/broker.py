"""kombu's Redis transport, with one client per channel instead of one per operation.

Two costs per message are taken out of kombu's Redis transport here.

kombu's Redis channel builds a new `redis.Redis` client for every publish and every ack
(`Channel.conn_or_acquire`); with redis-py 5 and later a client costs ~0.3 ms of CPU to
build (it copies its response-callback table), about half of what publishing a step
message costs. The clients share the channel's connection pool either way, so one client
per channel, rebuilt whenever kombu replaces the pool (after a fork or a lost connection),
sends the same commands over the same connections.

And it reads an exchange's bindings from Redis (SMEMBERS) for every message it publishes, a
round trip that even a pipelined batch of publishes waits for, message after message. Our
step exchanges are bound once, to queues of their own name, and never rebound: their bindings
are kept for BINDINGS_SECONDS per channel. Other exchanges (Celery's control replies, whose
queues come and go with each client) are asked every time, as kombu does.

Selected by `broker_transport` for `redis://` broker URLs (tasks/app.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

from tasks.dispatcher import STEP_QUEUE, SWEEPER_QUEUE

TRANSPORT = "tasks.broker:Transport"
BINDINGS_SECONDS = 1.0
KEPT_BINDINGS = frozenset({STEP_QUEUE, SWEEPER_QUEUE})


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

    def get_table(self, exchange: str) -> list[tuple[str, ...]]:
        if exchange not in KEPT_BINDINGS:
            return super().get_table(exchange)  # type: ignore[no-any-return,no-untyped-call]
        tables = self.__dict__.setdefault("_tables", {})
        kept = tables.get(exchange)
        now = time.monotonic()
        if kept is not None and kept[0] > now:
            return list(kept[1])
        table: list[tuple[str, ...]] = super().get_table(exchange)  # type: ignore[no-untyped-call]
        if table:
            tables[exchange] = (now + BINDINGS_SECONDS, table)
        return table


class Transport(kombu_redis.Transport):
    Channel = Channel
