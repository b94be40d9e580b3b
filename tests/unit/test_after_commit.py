"""AfterCommit: a caller sends at once unless another send is on its way (then the process's
thread sends for it); a failed send is logged, never raised, and the broker's return awaited by
ping while messages are left to the sweeper."""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import uuid
from collections.abc import Callable, Sequence

import pytest

from engine.after_commit import AfterCommit, after_commit
from engine.dispatch import Dispatch, Message


def messages(count: int) -> list[Message]:
    return [Dispatch(uuid.uuid4(), f"step{n}", "contact_update") for n in range(count)]


class Broker:
    """Records what it is sent; `down` makes sends and pings fail, `gate` holds each send."""

    def __init__(self) -> None:
        self.sent: list[list[Message]] = []
        self.down = False
        self.pings = 0
        self.gate: threading.Event | None = None
        self.sending = threading.Event()
        self.entered = 0  # sends begun

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        self.entered += 1
        self.sending.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.down:
            raise ConnectionError("broker unreachable")
        self.sent.append(list(dispatches))

    def ping(self) -> None:
        self.pings += 1
        if self.down:
            raise ConnectionError("broker unreachable")


class Pauses:
    """AfterCommit's sleep: records each pause, and brings the broker back after `until`."""

    def __init__(self, broker: Broker, until: int) -> None:
        self.broker, self.until = broker, until
        self.taken: list[float] = []
        self.back = threading.Event()

    def __call__(self, seconds: float) -> None:
        self.taken.append(seconds)
        if len(self.taken) >= self.until:
            self.broker.down = False
            self.back.set()


def held_send(sender: AfterCommit, broker: Broker) -> tuple[threading.Event, threading.Thread]:
    """A first send made from another thread and held at the broker's gate: the gate, and the
    thread (joined once the gate is open)."""
    gate = threading.Event()
    broker.gate = gate
    caller = threading.Thread(target=sender.dispatch, args=(messages(1),))
    caller.start()
    assert broker.sending.wait(5)
    return gate, caller


def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("never came true")


def test_a_caller_alone_sends_at_once_in_its_own_thread() -> None:
    broker = Broker()
    sender = AfterCommit(broker)
    first, second = messages(2), messages(3)

    sender.dispatch(first)
    assert broker.sent == [first]  # sent before dispatch returned
    sender.dispatch(second)

    assert broker.sent == [first, second]
    assert sender._thread is None  # no thread needed


def test_what_comes_while_a_send_is_on_its_way_goes_out_after_it_in_one_send() -> None:
    broker = Broker()
    sender = AfterCommit(broker)
    gate, caller = held_send(sender, broker)

    for _ in range(5):
        sender.dispatch(messages(2))  # returns at once: not behind the held send
    gate.set()
    caller.join()

    assert sender.flush(5)
    assert [len(sent) for sent in broker.sent] == [1, 10]


def test_a_failed_send_is_logged_and_the_broker_awaited_by_ping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker()
    broker.down = True
    pauses = Pauses(broker, until=3)
    sender = AfterCommit(broker, sleep=pauses)

    with caplog.at_level(logging.WARNING, logger="engine.after_commit"):
        sender.dispatch(messages(2))  # fails: the sweeper's
        assert sender.flush(5)
        assert pauses.back.wait(5)
        until(lambda: "were left to the sweeper" in caplog.text)  # the thread notes it
        sender.dispatch(messages(1))
        assert sender.flush(5)

    assert pauses.taken == [0.5, 1.0, 2.0]  # doubling
    assert broker.pings == 3
    assert [len(sent) for sent in broker.sent] == [1]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "2 message(s) of committed transactions not sent" in errors[0].getMessage()
    assert "2 message(s) were left to the sweeper" in caplog.text


def test_while_the_broker_is_down_messages_are_counted_not_queued(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker()
    broker.down = True
    held = threading.Event()
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            held.wait(5)  # the first pause lasts until the test has sent more
        broker.down = False

    sender = AfterCommit(broker, sleep=sleep)
    with caplog.at_level(logging.WARNING, logger="engine.after_commit"):
        sender.dispatch(messages(1))
        until(lambda: bool(pauses))
        sender.dispatch(messages(4))  # down: left to the sweeper at once
        held.set()
        until(lambda: "were left to the sweeper" in caplog.text)

    assert broker.sent == []
    assert "5 message(s) were left to the sweeper" in caplog.text


def test_a_full_queue_leaves_new_messages_to_the_sweeper(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker()
    sender = AfterCommit(broker, max_queued=3)
    gate, caller = held_send(sender, broker)

    with caplog.at_level(logging.WARNING, logger="engine.after_commit"):
        sender.dispatch(messages(2))
        sender.dispatch(messages(2))  # one fits
        sender.dispatch(messages(2))  # none fits: said once, not per call
    gate.set()
    caller.join()

    assert sender.flush(5)
    assert [len(sent) for sent in broker.sent] == [1, 3]
    assert caplog.text.count("new ones are left to the sweeper") == 1


def test_what_waits_behind_a_send_that_fails_is_left_to_the_sweeper(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker()
    pauses = Pauses(broker, until=1)
    sender = AfterCommit(broker, sleep=pauses)
    gate, caller = held_send(sender, broker)
    sender.dispatch(messages(3))  # queued behind the held send
    broker.down = True
    with caplog.at_level(logging.WARNING, logger="engine.after_commit"):
        gate.set()
        caller.join()
        assert pauses.back.wait(5)
        until(lambda: "were left to the sweeper" in caplog.text)

    assert broker.entered == 1  # one send tried against the broker, not two
    assert "4 message(s) were left to the sweeper" in caplog.text


def test_flush_says_when_it_could_not_wait_long_enough() -> None:
    broker = Broker()
    sender = AfterCommit(broker)
    gate, caller = held_send(sender, broker)
    sender.dispatch(messages(1))
    assert not sender.flush(0.05)
    gate.set()
    caller.join()
    assert sender.flush(5)


def test_a_forked_child_sends_on_its_own_and_not_its_parents_queue() -> None:
    broker = Broker()
    sender = AfterCommit(broker)
    gate, caller = held_send(sender, broker)
    sender.dispatch(messages(2))  # queued in the parent behind the held send
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        broker.gate, broker.sent = None, []
        sender.dispatch(messages(1))
        ok = sender.flush(5) and [len(sent) for sent in broker.sent] == [1]
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(child, 0)
    gate.set()
    caller.join()
    assert answer == b"1"
    assert sender.flush(5)


def test_a_child_forked_while_another_thread_holds_the_lock_can_send() -> None:
    broker = Broker()
    sender = AfterCommit(broker)
    sender.dispatch(messages(1))
    assert sender.flush(5)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with sender._changed:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        broker.sent = []
        sender.dispatch(messages(2))  # a lock inherited held would hang here
        ok = sender.flush(5) and [len(sent) for sent in broker.sent] == [2]
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 10)
        answer = os.read(read, 1) if ready else b"hung"
    finally:
        release.set()
        holder.join()
        if answer == b"hung":
            os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    assert answer == b"1"


def test_ping_is_the_brokers() -> None:
    broker = Broker()
    broker.down = True
    with pytest.raises(ConnectionError):  # /ready still says the broker is down
        AfterCommit(broker).ping()


def test_wrapping_twice_wraps_once() -> None:
    once = after_commit(Broker())
    assert after_commit(once) is once
