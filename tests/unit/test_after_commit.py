"""AfterCommit: messages of a committed transaction whose send fails are logged, not raised."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from engine.dispatch import (
    AfterCommit,
    Dispatch,
    Message,
    after_commit,
    commit_then_dispatch,
)

MESSAGES = [Dispatch(uuid.uuid4(), "tag", "contact_update"), Dispatch(uuid.uuid4(), "a", "trigger")]


class Broker:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.sent: list[list[Message]] = []
        self.pinged = 0

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.sent.append(list(dispatches))

    def ping(self) -> None:
        self.pinged += 1
        if self.down:
            raise ConnectionError("broker unreachable")


def test_a_failed_send_is_logged_with_its_count_and_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    AfterCommit(Broker(down=True)).dispatch(MESSAGES)

    (record,) = caplog.records
    assert record.levelname == "ERROR"
    assert record.getMessage() == (
        "2 message(s) of a committed transaction not sent; the sweeper sends them"
    )
    assert record.exc_info is not None  # the broker's own error, for the operator


def test_a_send_that_works_goes_through() -> None:
    broker = Broker()
    AfterCommit(broker).dispatch(MESSAGES)
    assert broker.sent == [MESSAGES]


def test_ping_still_says_the_broker_is_down() -> None:
    # /ready must keep telling a load balancer, even though requests are answered.
    with pytest.raises(ConnectionError):
        AfterCommit(Broker(down=True)).ping()


def test_wrapping_twice_wraps_once() -> None:
    once = after_commit(Broker())
    assert after_commit(once) is once


@dataclass
class Done:
    dispatches: list[Message] = field(default_factory=lambda: list(MESSAGES))


def test_accepted_sees_the_result_after_the_commit_and_before_the_send() -> None:
    order: list[str] = []

    class Recording(Broker):
        def dispatch(self, dispatches: Sequence[Message]) -> None:
            order.append("sent")

    class Opened(AbstractContextManager[Any]):
        def __enter__(self) -> Any:
            return None

        def __exit__(self, *exc: object) -> None:
            order.append("committed")

    result = commit_then_dispatch(
        cast(Any, Opened()),
        Recording(),
        lambda _: order.append("worked") or Done(),
        accepted=lambda done: order.append(f"accepted {len(done.dispatches)}"),
        committed=lambda: order.append("checkpoint"),
    )
    assert order == ["worked", "committed", "accepted 2", "checkpoint", "sent"]
    assert result.dispatches == MESSAGES


def test_nothing_is_accepted_or_sent_when_the_work_fails() -> None:
    broker, accepted = Broker(), []

    def work(_: object) -> Done:
        raise ValueError("refused")

    with pytest.raises(ValueError):
        commit_then_dispatch(cast(Any, nullcontext()), broker, work, accepted=accepted.append)
    assert (broker.sent, accepted) == ([], [])
