"""Our Redis transport: kombu's, with one client per channel; messages go through unchanged; the
dispatcher pushes step messages on a channel it keeps."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from kombu import Connection

from engine.dispatch import Dispatch
from engine.settings import Settings
from tasks.app import celery_config, create_celery_app
from tasks.broker import TRANSPORT
from tasks.dispatcher import CeleryDispatcher
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


# -- step messages pushed by the dispatcher ---------------------------------------------------


@pytest.fixture
def dispatcher(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[CeleryDispatcher, str]]:
    """A dispatcher on the test's Redis database, pushing to a queue of this test's own (a
    stack's worker may be consuming the step queue of the same database)."""
    address = urlsplit(REDIS_URL)
    require_service("Redis", address.hostname or "127.0.0.1", address.port or 6379)
    queue = f"test.dispatch.{uuid.uuid4().hex}"
    monkeypatch.setattr("tasks.dispatcher.STEP_QUEUE", queue)
    app = create_celery_app(Settings(broker_url=REDIS_URL))
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield CeleryDispatcher(app), queue
    finally:
        client.delete(queue)
        client.close()
        app.close()


def pushed(queue: str) -> list[dict[str, str]]:
    """The kwargs of the step messages on `queue`, in the order a worker takes them."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        entries = client.lrange(queue, 0, -1)
    finally:
        client.close()
    bodies = [json.loads(base64.b64decode(json.loads(entry)["body"])) for entry in entries]
    return [kwargs for _, kwargs, _ in reversed(bodies)]


def step(key: str) -> Dispatch:
    return Dispatch(uuid.uuid4(), key, "condition")


def test_step_messages_go_out_on_one_channel_per_process(
    dispatcher: tuple[CeleryDispatcher, str],
) -> None:
    sender, queue = dispatcher
    sender.dispatch([step("a"), step("b")])
    held = sender._held
    assert held is not None and held.pid == os.getpid()
    sender.dispatch([step("c")])
    assert sender._held is held, "the same channel, not a producer from the pool per push"
    assert [kwargs["step_key"] for kwargs in pushed(queue)] == ["a", "b", "c"]

    # A child forked after that opens a channel of its own (seen here as another pid).
    sender._held = dataclasses.replace(held, pid=-1)
    sender.dispatch([step("d")])
    assert sender._held is not None and sender._held.pid == os.getpid()
    assert sender._held.channel is not held.channel


def test_a_push_survives_the_connection_under_the_held_channel_breaking(
    dispatcher: tuple[CeleryDispatcher, str],
) -> None:
    sender, queue = dispatcher
    sender.dispatch([step("before")])
    assert sender._held is not None
    with sender._held.channel.conn_or_acquire() as client:
        client.client_kill_filter(_id=client.client_id())  # our own connection, nobody else's
    sender.dispatch([step("after")])
    assert [kwargs["step_key"] for kwargs in pushed(queue)] == ["before", "after"]


def test_a_push_the_held_channel_cannot_make_goes_through_the_apps_pool(
    dispatcher: tuple[CeleryDispatcher, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis down for a moment (a restart): the held client fails at once, so the push is made
    again through a pooled producer, which reconnects under the broker's retry policy."""
    sender, queue = dispatcher
    sender.dispatch([step("before")])
    held = sender._held
    assert held is not None

    class Down:
        def lpush(self, *_: object) -> None:
            raise redis.ConnectionError("Connection refused")

    @contextlib.contextmanager
    def down(client: object = None) -> Iterator[Down]:
        yield Down()

    monkeypatch.setattr(held.channel, "conn_or_acquire", down)
    sender.dispatch([step("during")])
    assert sender._held is None, "the held channel is let go"
    sender.dispatch([step("after")])
    assert sender._held is not None and sender._held.channel is not held.channel
    assert [kwargs["step_key"] for kwargs in pushed(queue)] == ["before", "during", "after"]
