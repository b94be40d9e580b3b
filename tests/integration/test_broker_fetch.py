"""Our Redis transport's fetch: a message leaves its queue only to be recorded as unacknowledged
at once, or to move to its consumer's in-flight list, which it leaves only to be recorded, so a
consumer that dies at any instant loses nothing (tasks/broker.py, tasks/fetch.py). On a real
Redis, the synchronous path (`drain_events`); the event loop's is the workers'
(test_event_groups.py, tests/faults)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

from tasks import fetch_scripts as fetch
from tasks.broker import TRANSPORT, Channel, QoS
from tests.conftest import REDIS_URL, require_service


class Died(BaseException):
    """What the consuming process meets instead of recording the message: its end."""


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    address = urlsplit(REDIS_URL)
    require_service("Redis", address.hostname or "127.0.0.1", address.port or 6379)
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def names(broker: redis.Redis) -> Iterator[list[str]]:
    """Queue names of this test's own; their lists are deleted after it."""
    prefix = f"test.fetch.{uuid.uuid4().hex[:8]}"
    made = [f"{prefix}.{n}" for n in range(3)]
    yield made
    for key in broker.keys(f"{prefix}*"):
        broker.delete(key)


def connect(**options: Any) -> Connection:
    return Connection(REDIS_URL, transport=TRANSPORT, transport_options=options)


class Received:
    """A consumer of some queues on its own connection, and what it was given (acked, unless
    `ack` is False: then held in `held`)."""

    def __init__(self, *queues: str, ack: bool = True, **options: Any) -> None:
        self.connection = connect(**options)
        self.channel: Channel = self.connection.default_channel
        self.bodies: list[Any] = []
        self.ack = ack
        self.held: list[Any] = []
        self.consumer = Consumer(
            self.channel,
            queues=[declared(name) for name in queues],
            callbacks=[self._take],
            accept=["json"],
        )
        self.consumer.consume()

    def _take(self, body: Any, message: Any) -> None:
        self.bodies.append(body)
        if self.ack:
            message.ack()
        else:
            self.held.append(message)

    def drain(self, count: int) -> list[Any]:
        """Until `count` more messages came (each drain waits a few seconds at most)."""
        wanted = len(self.bodies) + count
        while len(self.bodies) < wanted:
            self.connection.drain_events(timeout=5)
        return self.bodies[wanted - count :]

    def close(self) -> None:
        self.connection.release()


def declared(name: str) -> Queue:
    return Queue(name, Exchange(name, "direct"), routing_key=name, max_priority=9)


def publish(name: str, *bodies: Any, priority: int | None = None) -> None:
    with connect() as conn:
        producer = Producer(conn.default_channel)
        for body in bodies:
            producer.publish(
                body,
                exchange=Exchange(name, "direct"),
                routing_key=name,
                declare=[declared(name)],
                serializer="json",
                priority=priority,
            )


def unacked(broker: redis.Redis, queue: str) -> list[bytes]:
    """Delivery tags recorded as unacknowledged for messages routed to `queue`."""
    return [
        tag for tag, record in broker.hgetall("unacked").items() if json.loads(record)[2] == queue
    ]


def visibility_timeout_passed(broker: redis.Redis, queue: str) -> None:
    """The messages of `queue` recorded as unacknowledged, as if recorded an hour ago."""
    for tag in unacked(broker, queue):
        broker.zadd("unacked_index", {tag: 0})


def wait(channel: Channel) -> None:
    """Find every queue of `channel` empty, then send the blocking wait that follows."""
    cycle = channel.connection.cycle
    cycle._register_BRPOP(channel)
    with pytest.raises(Empty):
        channel._brpop_read()
    cycle._register_BRPOP(channel)
    assert channel._fetch is not None and channel._fetch[0] == "BLMOVE"


def in_flight(broker: redis.Redis, channel: Channel, queue: str) -> list[bytes]:
    return broker.lrange(fetch.list_key(channel._token, queue), 0, -1)


def silent(broker: redis.Redis, channel: Channel) -> None:
    """Every in-flight list of `channel` as if its owner had been silent for ages."""
    token = getattr(channel, "_token", None)  # kombu's own channel has none
    for key in broker.zrange(fetch.REGISTRY, 0, -1):
        if token and key.decode().startswith(fetch.list_key(token, "")):
            broker.zadd(fetch.REGISTRY, {key: 0})


def killed(broker: redis.Redis, received: Received) -> None:
    """Its process gone, long ago: the kernel closed every connection it had to Redis, and it
    was last heard from at Redis's epoch."""
    channel = received.channel
    for pool in (channel._pool, channel._async_pool):
        if pool is not None:
            pool.disconnect()
    broker.zadd(fetch.OWNERS, {channel._token: 0})


def next_check(received: Received) -> None:
    """The periodic check of a living consumer (its heartbeat, and its look for dead ones)."""
    received.channel._kept_at = float("-inf")
    received.channel.qos.restore_visible()


def owned(broker: redis.Redis, received: Received) -> set[bytes]:
    """The messages recorded as `received`'s, by its set and by each message's owner."""
    token = received.channel._token
    listed = broker.smembers(fetch.owned_key(token))
    owners = broker.hgetall(fetch.OWNER_OF)
    assert {tag for tag, owner in owners.items() if owner.decode() == token} == listed
    return listed


@contextmanager
def consuming(*queues: str, **options: Any) -> Iterator[Received]:
    received = Received(*queues, **options)
    try:
        yield received
    finally:
        received.close()


@contextmanager
def held_then_killed(broker: redis.Redis, name: str) -> Iterator[Received]:
    """A consumer holding two messages of `name` unacknowledged, one taken while messages
    waited, one by its blocking wait; then killed."""
    publish(name, "scanned")
    with consuming(name, ack=False) as dying:
        assert dying.drain(1) == ["scanned"]
        wait(dying.channel)
        publish(name, "waited for")
        assert dying.channel._brpop_read() is True
        assert dying.bodies == ["scanned", "waited for"]
        assert len(unacked(broker, name)) == 2 and len(owned(broker, dying)) == 2
        killed(broker, dying)
        yield dying


def test_a_dead_consumers_unacknowledged_messages_come_back_before_the_visibility_timeout(
    broker: redis.Redis, names: list[str], caplog: Any
) -> None:
    [name, *_] = names
    with held_then_killed(broker, name) as dying:
        publish(name, "next")
        with consuming(name) as survivor:
            with caplog.at_level(logging.WARNING, logger="tasks.fetch"):
                next_check(survivor)
            assert "2 unacknowledged messages of dead consumers went back" in caplog.text
            assert unacked(broker, name) == []
            assert owned(broker, dying) == set()
            assert broker.zscore(fetch.OWNERS, dying.channel._token) is None, "forgotten"
            # Back at the consuming end of their queue, in the order they were taken.
            assert survivor.drain(3) == ["scanned", "waited for", "next"]
            assert owned(broker, survivor) == set(), "acked"


def test_a_dead_consumers_message_goes_back_once_however_many_find_it_dead(
    broker: redis.Redis, names: list[str]
) -> None:
    """A second consumer that found the same dead one acts after the first gave its messages
    back and a third took them: they are the third's now, not the dead one's to give back."""
    [name, *_] = names
    with (
        held_then_killed(broker, name) as dying,
        consuming(name) as first,
        consuming(name, ack=False) as third,
        consuming(name) as second,
    ):
        dead, tags = dying.channel._token, owned(broker, dying)
        next_check(first)
        assert third.drain(2) == ["scanned", "waited for"]
        assert owned(broker, third) == tags
        assert second.channel._fetches_reliably()
        with second.channel.conn_or_acquire() as client:
            for tag in tags:
                assert second.channel._give_back_owned(client, dead, tag) == 0
        assert broker.llen(name) == 0, "not given back twice"
        assert len(unacked(broker, name)) == 2 and owned(broker, third) == tags


def test_a_consumer_taken_for_dead_gives_back_at_its_close_only_what_is_still_its(
    broker: redis.Redis, names: list[str]
) -> None:
    """Its connections were dropped (a partition) but it lived: its messages went back and
    another consumer took them. When it closes, kombu gives back what it still holds
    unacknowledged; those are the other's now, and would be delivered a second time."""
    [name, *_] = names
    with (
        held_then_killed(broker, name) as dying,
        consuming(name) as first,
        consuming(name, ack=False) as third,
    ):
        next_check(first)
        assert third.drain(2) == ["scanned", "waited for"]
        tags = owned(broker, third)
        dying.close()
        assert broker.llen(name) == 0, "nothing given back twice"
        assert len(unacked(broker, name)) == 2 and owned(broker, third) == tags


def test_a_consumer_that_closes_gives_back_what_it_holds_in_the_order_it_came(
    broker: redis.Redis, names: list[str]
) -> None:
    [name, *_] = names
    publish(name, "first", "second", "third")
    with consuming(name, ack=False) as closing:
        assert closing.drain(2) == ["first", "second"]
    token = closing.channel._token
    assert unacked(broker, name) == [] and owned(broker, closing) == set()
    assert broker.zscore(fetch.OWNERS, token) is None, "forgotten at once"
    assert token not in fetch.named_owners(broker.client_list(_type="normal")), "disconnected"
    with consuming(name) as next_one:
        assert next_one.drain(3) == ["first", "second", "third"]


def test_a_message_requeued_goes_to_the_back_of_its_queue_if_still_the_consumers(
    broker: redis.Redis, names: list[str]
) -> None:
    [name, other_name, *_] = names
    publish(name, "requeued", "waiting")
    with consuming(name, ack=False) as reader:
        assert reader.drain(1) == ["requeued"]
        reader.held[0].requeue()
        assert unacked(broker, name) == [] and owned(broker, reader) == set()
        assert reader.drain(2) == ["waiting", "requeued"], "at the back of its queue"
    with (
        held_then_killed(broker, other_name) as dying,
        consuming(other_name, ack=False) as other,
    ):
        next_check(other)
        assert other.drain(2) == ["scanned", "waited for"]
        dying.held[0].requeue()
        assert broker.llen(other_name) == 0, "the other's now: not requeued"
        assert len(unacked(broker, other_name)) == 2


def test_a_dead_consumers_record_that_is_not_kombus_is_left_to_the_visibility_timeout(
    broker: redis.Redis, names: list[str], caplog: Any
) -> None:
    [name, *_] = names
    with held_then_killed(broker, name) as dying:
        token, tags = dying.channel._token, sorted(owned(broker, dying))
        broker.hset("unacked", tags[0], b"not kombu's record")
        try:
            with consuming(name) as survivor:
                with caplog.at_level(logging.ERROR, logger="tasks.fetch"):
                    next_check(survivor)
                assert "is left to the visibility timeout" in caplog.text
                assert broker.hget("unacked", tags[0]) == b"not kombu's record", "left in place"
                assert survivor.drain(1) and broker.llen(name) == 0, "the other one went back"
                assert broker.zscore(fetch.OWNERS, token) is None, "the dead one forgotten"
        finally:
            broker.hdel("unacked", tags[0])
            broker.zrem("unacked_index", tags[0])
            broker.hdel(fetch.OWNER_OF, tags[0])


def test_a_silent_consumer_still_connected_keeps_what_it_holds(
    broker: redis.Redis, names: list[str]
) -> None:
    """A worker busy in a long task says nothing for a while, but its connections are open."""
    [name, *_] = names
    publish(name, "slow")
    with consuming(name, ack=False) as busy, consuming(name) as other:
        assert busy.drain(1) == ["slow"]
        broker.zadd(fetch.OWNERS, {busy.channel._token: 0})
        next_check(other)
        assert len(unacked(broker, name)) == 1 and broker.llen(name) == 0
        [message] = busy.held
        message.ack()
        assert unacked(broker, name) == [] and owned(broker, busy) == set()


def test_without_client_list_a_dead_consumers_messages_wait_for_the_visibility_timeout(
    broker: redis.Redis, names: list[str], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Redis's ACL may refuse CLIENT LIST: a silent consumer cannot be told dead from busy."""
    [name, *_] = names

    def refused(*_: Any, **__: Any) -> None:
        raise redis.ResponseError("NOPERM this user has no permissions to run 'client'")

    with held_then_killed(broker, name) as dying:
        monkeypatch.setattr(redis.Redis, "client_list", refused)
        with consuming(name) as survivor:
            with caplog.at_level(logging.WARNING, logger="tasks.fetch"):
                next_check(survivor)
            assert "refused CLIENT LIST" in caplog.text
            assert len(unacked(broker, name)) == 2 and broker.llen(name) == 0
            visibility_timeout_passed(broker, name)
            survivor.channel.qos.restore_visible(interval=1)
            assert sorted(survivor.drain(2)) == ["scanned", "waited for"]
            dead = dying.channel._token
            assert broker.zscore(fetch.OWNERS, dead) is not None
            next_check(survivor)
            assert broker.zscore(fetch.OWNERS, dead) is None, "forgotten, holding nothing more"


def test_every_connection_of_a_consumer_is_named_by_its_token(
    broker: redis.Redis, names: list[str]
) -> None:
    [name, *_] = names
    publish(name, "named")
    with consuming(name, client_name="billing") as reader:
        assert reader.drain(1) == ["named"]
        token = reader.channel._token
        mine = [c for c in broker.client_list(_type="normal") if token in c["name"]]
        assert len(mine) >= 2, "the blocking connection and the one that acks"
        assert {c["name"] for c in mine} == {f"billing.{token}"}
        assert token in fetch.named_owners(mine)


def test_a_message_taken_by_a_consumer_that_dies_comes_back(
    broker: redis.Redis, names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer dies after taking the message, where kombu had popped it and not yet
    recorded it as unacknowledged."""
    [name, *_] = names
    publish(name, "first", "second")
    dying = Received(name)
    try:

        def die(*_: Any) -> None:
            raise Died

        monkeypatch.setattr(QoS, "append", die)
        with pytest.raises(Died):
            dying.connection.drain_events(timeout=5)
        monkeypatch.undo()
        assert broker.llen(name) == 1
        visibility_timeout_passed(broker, name)

        survivor = Received(name)
        try:
            survivor.channel.qos.restore_visible()  # at a consumer's start, and periodically
            # Back at the consuming end of its queue: delivered before the second.
            assert survivor.drain(2) == ["first", "second"]
        finally:
            survivor.close()
    finally:
        dying.close()


def test_the_fetch_records_the_message_as_it_takes_it(
    broker: redis.Redis, names: list[str]
) -> None:
    [name, *_] = names
    publish(name, "recorded")
    reader = Received(name)
    try:
        channel = reader.channel
        channel.connection.cycle._register_BRPOP(channel)  # sends the fetch
        assert channel._fetch is not None and channel._fetch[0] == "EVALSHA"
        while broker.llen(name):
            pass  # Redis runs it at once
        # Its reply not read yet: the message is already where kombu restores it from.
        [tag] = unacked(broker, name)
        assert broker.zscore("unacked_index", tag)
        assert channel._brpop_read() is True
        assert reader.bodies == ["recorded"]
        assert unacked(broker, name) == [], "acked"
    finally:
        reader.close()


def test_a_message_the_wait_took_is_in_an_in_flight_list_until_recorded(
    broker: redis.Redis, names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every queue was empty, so the consumer waited; a message came, and the consumer died
    before recording it."""
    [name, *_] = names
    publish(name, "declared")
    dying = Received(name)
    try:
        assert dying.drain(1) == ["declared"]
        wait(dying.channel)
        publish(name, "taken", "next")
        monkeypatch.setattr(dying.channel, "_claim", lambda *_: (_ for _ in ()).throw(Died))
        with pytest.raises(Died):
            dying.channel._brpop_read()
        monkeypatch.undo()
        [entry] = in_flight(broker, dying.channel, name)
        assert json.loads(entry)["body"] == base64.b64encode(b'"taken"').decode()
        assert broker.llen(name) == 1 and unacked(broker, name) == []
        listed = fetch.list_key(dying.channel._token, name)
        assert broker.zscore(fetch.REGISTRY, listed) is not None, "named in the registry"

        survivor = Received(name)
        try:
            survivor.channel.qos.restore_visible()
            assert len(in_flight(broker, dying.channel, name)) == 1, "its owner is not silent yet"
            silent(broker, dying.channel)
            survivor.channel._kept_at = float("-inf")  # the next interval
            survivor.channel.qos.restore_visible()
            assert in_flight(broker, dying.channel, name) == []
            assert broker.zscore(fetch.REGISTRY, listed) is None
            # Back at the consuming end of its queue: delivered before the next.
            assert survivor.drain(2) == ["taken", "next"]
        finally:
            survivor.close()
    finally:
        dying.channel._dirty = False  # dead: it gives nothing back when closed
        dying.close()


def test_a_late_consumer_drops_its_copy_of_a_message_given_back(
    broker: redis.Redis, names: list[str], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Its owner stalled past the owner timeout between the wait's move and the record: the
    message went back to its queue, and the owner, resuming, delivers nothing: one delivery in
    all, by whoever takes it from the queue."""
    [name, *_] = names
    late = Received(name, inflight_owner_timeout=60)
    claim = Channel._claim

    def stall_then_claim(channel: Channel, *args: Any) -> None:
        silent(broker, channel)
        assert channel._scripts is not None
        with channel.conn_or_acquire() as client:  # another consumer's pass: the owner is late
            channel._scripts.give_back_silent(client, 60)
        claim(channel, *args)

    try:
        publish(name, "declared")
        assert late.drain(1) == ["declared"]
        wait(late.channel)
        publish(name, "once")
        monkeypatch.setattr(Channel, "_claim", stall_then_claim)
        with caplog.at_level(logging.WARNING, logger="tasks.broker"):
            late.channel._brpop_read()
        assert late.bodies == ["declared"]
        assert "late to take went back to its queue" in caplog.text
        assert broker.llen(name) == 1, "back in its queue, and not unacknowledged by the late one"
        assert unacked(broker, name) == []
        monkeypatch.undo()
        assert late.drain(1) == ["once"]
        assert broker.llen(name) == 0
    finally:
        late.close()


def test_queues_are_taken_in_turn_and_each_is_served_while_idle(
    broker: redis.Redis, names: list[str]
) -> None:
    first, second, _ = names
    publish(first, "a1", "a2", "a3")
    publish(second, "b1", "b2", "b3")
    both = Received(first, second)
    try:
        # Round robin over the queues, as kombu's BRPOP: neither waits for the other to empty.
        assert both.drain(6) == ["a1", "b1", "a2", "b2", "a3", "b3"]
        # Idle, the consumer waits on its first queue; a message on the second still comes.
        with pytest.raises(socket.timeout):
            both.connection.drain_events(timeout=0.2)
        assert both.channel._fetch is not None and both.channel._fetch[0] == "BLMOVE"
        publish(second, "b4")
        assert both.drain(1) == ["b4"]
        # kombu's priorities on Redis: 0 is taken first, 9 last.
        publish(first, "low", priority=9)
        publish(first, "high", priority=0)
        assert both.drain(2) == ["high", "low"]
        for queue in (first, second):
            assert in_flight(broker, both.channel, queue) == []
            assert unacked(broker, queue) == []
    finally:
        both.close()


def test_a_message_waited_for_is_taken_by_the_blocking_move(
    broker: redis.Redis, names: list[str]
) -> None:
    [name, *_] = names
    publish(name, "declared")
    waiting = Received(name)
    try:
        assert waiting.drain(1) == ["declared"]
        wait(waiting.channel)
        publish(name, "woken")
        assert waiting.channel._brpop_read() is True
        assert waiting.bodies == ["declared", "woken"]
        assert in_flight(broker, waiting.channel, name) == []
        assert unacked(broker, name) == []
    finally:
        waiting.close()


def test_a_wait_whose_reply_is_lost_gives_its_message_back(
    broker: redis.Redis, names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection breaks after Redis moved the message and before its reply was read."""
    [name, *_] = names
    publish(name, "declared")
    cut = Received(name)
    try:
        assert cut.drain(1) == ["declared"]
        channel = cut.channel
        wait(channel)
        publish(name, "moved")
        while not in_flight(broker, channel, name):
            pass  # Redis moves it at once

        def lost(connection: Any, *_: Any, **__: Any) -> None:
            connection.disconnect()
            raise redis.ConnectionError("Connection closed by server.")

        monkeypatch.setattr(channel.client, "parse_response", lost)
        with pytest.raises(redis.ConnectionError):
            channel._brpop_read()
        monkeypatch.undo()
        assert cut.drain(1) == ["moved"]
        assert in_flight(broker, channel, name) == []
    finally:
        cut.close()


def test_closing_gives_back_what_the_consumer_took_and_did_not_record(
    broker: redis.Redis, names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    [name, *_] = names
    publish(name, "declared")
    closing = Received(name)
    assert closing.drain(1) == ["declared"]
    wait(closing.channel)
    publish(name, "kept")
    monkeypatch.setattr(closing.channel, "_claim", lambda *_: (_ for _ in ()).throw(Died))
    with pytest.raises(Died):
        closing.channel._brpop_read()
    assert broker.llen(name) == 0
    closing.close()
    assert broker.llen(name) == 1, "back in its queue at once, not after the owner timeout"
    assert in_flight(broker, closing.channel, name) == []


def test_an_entry_that_is_not_a_message_is_dropped_for_good(
    broker: redis.Redis, names: list[str], caplog: Any
) -> None:
    [name, *_] = names
    publish(name, "before")  # declares the queue
    broker.lpush(name, b"garbage, not json")
    # One that reads as a message in Redis, not in kombu: its body is not base64.
    route = {"exchange": name, "routing_key": name}
    odd = {"body": "abc", "properties": {"delivery_tag": "odd", "body_encoding": "base64"}}
    odd["properties"]["delivery_info"] = route
    broker.lpush(name, json.dumps(odd))
    publish(name, "after")
    reader = Received(name)
    try:
        with caplog.at_level(logging.ERROR, logger="tasks.broker"):
            assert reader.drain(2) == ["before", "after"]
        assert caplog.text.count("not a message") == 2
        assert unacked(broker, name) == [], "nothing left to come back after the timeout"

        wait(reader.channel)  # and one the blocking wait takes
        broker.lpush(name, b"[1]")
        with caplog.at_level(logging.ERROR, logger="tasks.broker"):
            reader.channel._brpop_read()
        assert caplog.text.count("not a message") == 3
        assert in_flight(broker, reader.channel, name) == []
    finally:
        reader.close()


def test_purge_empties_the_queue_and_consuming_goes_on(
    broker: redis.Redis, names: list[str]
) -> None:
    [name, *_] = names
    publish(name, "x", "y", "z")
    reader = Received(name)
    try:
        assert reader.channel.queue_purge(name) == 3
        publish(name, "after")
        assert reader.drain(1) == ["after"]
    finally:
        reader.close()


def test_without_lmove_the_channel_pops_as_kombu_does(
    broker: redis.Redis, names: list[str], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    [name, *_] = names
    publish(name, "old redis")
    original = redis.Redis.execute_command

    def no_lmove(client: redis.Redis, *args: Any, **kwargs: Any) -> Any:
        if args[0] == "LMOVE":
            raise redis.ResponseError("ERR unknown command 'LMOVE'")
        return original(client, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", no_lmove)
    with caplog.at_level(logging.WARNING, logger="tasks.broker"):
        reader = Received(name)
        try:
            assert reader.drain(1) == ["old redis"]
            assert reader.channel._reliable is False
        finally:
            reader.close()
    assert "no LMOVE" in caplog.text
