"""Every completed sweeper tick, under beat or in the embedded executor, stamps the sweeper's
heartbeat in its own transaction; a tick that fails stamps nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from unittest import mock

import pytest

from engine.clock import FrozenClock
from engine.db import transaction
from engine.dispatch import KeptDispatcher
from engine.runtime import Runtime, create_runtime
from engine.store import heartbeats
from engine.store.heartbeats import Beat
from engine.sweeper import tick
from engine.sweeper_health import HEARTBEAT, sweeper_health
from models.housekeeping import Heartbeat
from tasks.local import LocalExecutor
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)

T0 = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)
INTERVAL = dt.timedelta(seconds=5)


@pytest.fixture
def rt(rt_stack: Stack) -> Iterator[Runtime]:
    """A runtime on the stack's emptied database (no heartbeat row) with a clock at T0."""
    runtime = create_runtime(rt_stack.settings, clock=FrozenClock(T0))
    yield runtime
    runtime.sessions.kw["bind"].dispose()


def heartbeat(rt: Runtime) -> Beat | None:
    with transaction(rt.sessions) as session:
        return heartbeats.last(session, HEARTBEAT)


def advance(rt: Runtime, delta: dt.timedelta) -> None:
    clock = rt.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(delta)


def test_each_completed_tick_stamps_the_time_it_ran(rt: Runtime) -> None:
    assert heartbeat(rt) is None
    tick(rt, KeptDispatcher())
    assert heartbeat(rt) == Beat(created_at=T0, beat_at=T0)
    advance(rt, INTERVAL)
    tick(rt, KeptDispatcher())
    assert heartbeat(rt) == Beat(created_at=T0, beat_at=T0 + INTERVAL)
    advance(rt, dt.timedelta(seconds=60))
    with transaction(rt.sessions) as session:
        found = sweeper_health(session, now=rt.clock.now(), late_after=60)
    assert (found.status, found.last_tick_at, found.age_seconds) == ("ok", T0 + INTERVAL, 60.0)


def test_the_row_the_migration_made_is_stamped_by_the_first_tick(rt: Runtime) -> None:
    with transaction(rt.sessions) as session:
        session.add(Heartbeat(name=HEARTBEAT, created_at=T0, beat_at=None))  # as 0011 makes it
    advance(rt, INTERVAL)
    tick(rt, KeptDispatcher())
    assert heartbeat(rt) == Beat(created_at=T0, beat_at=T0 + INTERVAL)


def test_a_tick_that_fails_stamps_nothing(rt: Runtime) -> None:
    tick(rt, KeptDispatcher())
    advance(rt, INTERVAL)
    with (
        mock.patch("engine.sweeper.kick_stale", side_effect=RuntimeError("tick broke")),
        pytest.raises(RuntimeError, match="tick broke"),
    ):
        tick(rt, KeptDispatcher())
    assert heartbeat(rt) == Beat(created_at=T0, beat_at=T0)


def test_the_embedded_executor_ticks_stamp_the_same(rt: Runtime) -> None:
    """`automations dev` and `demo` sweep on a thread of their own, not under beat."""
    LocalExecutor(rt).sweep_once()
    assert heartbeat(rt) == Beat(created_at=T0, beat_at=T0)
