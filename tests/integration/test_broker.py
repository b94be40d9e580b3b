"""Our Redis transport: kombu's, with one client per channel; messages go through unchanged."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from kombu import Connection

from engine.settings import Settings
from tasks.app import celery_config
from tasks.broker import TRANSPORT
from tests.conftest import REDIS_URL, require_service


@pytest.fixture
def connection() -> Iterator[Connection]:
    address = urlsplit(REDIS_URL)
    require_service("Redis", address.hostname or "127.0.0.1", address.port or 6379)
    with Connection(REDIS_URL, transport=TRANSPORT) as conn:
        yield conn


def test_messages_round_trip(connection: Connection) -> None:
    queue = connection.SimpleQueue(f"test.broker.{uuid.uuid4().hex}")
    try:
        for n in range(3):
            queue.put({"n": n})
        received = []
        for _ in range(3):
            message = queue.get(timeout=5)
            received.append(message.payload["n"])
            message.ack()
        assert received == [0, 1, 2]
    finally:
        queue.clear()
        queue.close()


def test_one_client_per_channel_until_the_pool_is_replaced(connection: Connection) -> None:
    channel = connection.channel()
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
        assert first is second
    given = object()
    with channel.conn_or_acquire(given) as passed:
        assert passed is given
    channel._pool = None  # what kombu does after a fork or a lost connection
    with channel.conn_or_acquire() as third:
        assert third is not first
        assert third.connection_pool is channel.pool


def test_selected_for_plain_redis_urls_only() -> None:
    def transport(url: str) -> object:
        return celery_config(Settings(broker_url=url))["broker_transport"]

    assert transport("redis://127.0.0.1:6379/0") == TRANSPORT
    assert transport("rediss://example.test:6380/0") is None
    assert transport("amqp://guest@127.0.0.1//") is None
