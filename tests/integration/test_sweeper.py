"""The sweeper's re-sends: a per-step backoff and a per-tick cap, with time moved by the clock.

No message is ever handed to the broker here: `ingest` leaves its dispatches unsent, which is
exactly a message lost (or stuck behind a backlog), and each tick's dispatches are only counted.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from engine.clock import FrozenClock
from engine.db import transaction
from engine.dispatch import Message
from engine.executor import execute_step
from engine.ingest import ingest_event
from engine.runtime import Runtime, create_runtime
from engine.store import claims
from engine.sweeper import sweep, take_over
from models.tables import RunStep
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)

T0 = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)
STALE = dt.timedelta(seconds=30)
CAP = dt.timedelta(seconds=120)  # backoffs: 30 s, 60 s, then 120 s for every later re-send
LEASE = dt.timedelta(seconds=60)
SECOND = dt.timedelta(seconds=1)
TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
UPDATE = {"key": "after", "type": "contact_update", "config": {"first_name": "Swept"}}

StepId = tuple[uuid.UUID, str]


@pytest.fixture
def rt(rt_stack: Stack) -> Iterator[Runtime]:
    """A runtime on the stack's database with a clock of its own, stopped at T0."""
    yield from _runtime(rt_stack)


@pytest.fixture
def capped_rt(rt_stack: Stack) -> Iterator[Runtime]:
    """The same, re-sending at most three steps per tick."""
    yield from _runtime(rt_stack, sweeper_max_redispatch_per_tick=3)


def _runtime(stack: Stack, **settings: Any) -> Iterator[Runtime]:
    overrides = {
        "stale_after_seconds": STALE.total_seconds(),
        "redispatch_backoff_max_seconds": CAP.total_seconds(),
        "step_lease_seconds": LEASE.total_seconds(),
        **settings,
    }
    runtime = create_runtime(stack.settings.model_copy(update=overrides), clock=FrozenClock(T0))
    yield runtime
    runtime.sessions.kw["bind"].dispose()


def advance(rt: Runtime, delta: dt.timedelta) -> None:
    clock = rt.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(delta)


def start_run(rt: Runtime) -> uuid.UUID:
    """A run whose first step is pending with its message sent and never delivered."""
    with transaction(rt.sessions) as session:
        result = ingest_event(
            session, rt, event="user.created", email=unique_email(), now=rt.clock.now()
        )
    (run_id,) = result.run_ids
    return run_id


def tick(rt: Runtime) -> set[StepId]:
    with transaction(rt.sessions) as session:
        dispatches = sweep(session, rt, now=rt.clock.now())
    return {(d.run_id, d.step_key) for d in dispatches}


def step_row(rt: Runtime, step: StepId) -> RunStep:
    with transaction(rt.sessions) as session:
        row = session.get(RunStep, step)
        assert row is not None
        return row


def claim(rt: Runtime, step: StepId) -> bool:
    now = rt.clock.now()
    with transaction(rt.sessions) as session:
        claimed = claims.claim_step(session, *step, now=now, lease_until=now + LEASE)
    return claimed is not None


def test_a_lost_step_is_sent_again_with_a_growing_wait(rt_stack: Stack, rt: Runtime) -> None:
    make_automation(rt_stack, [TRIGGER, UPDATE], chain("start", "after"))
    step = (start_run(rt), "after")
    assert step_row(rt, step).redispatch_count == 0

    advance(rt, STALE - SECOND)
    assert tick(rt) == set()
    advance(rt, 2 * SECOND)
    assert tick(rt) == {step}
    assert step_row(rt, step).redispatch_count == 1
    assert tick(rt) == set(), "the next tick must not send it again"

    # The wait doubles with each re-send (60 s after the first), then stays at the cap (120 s).
    for wait, count in [(2 * STALE, 2), (CAP, 3), (CAP, 4)]:
        advance(rt, wait - SECOND)
        assert tick(rt) == set(), f"sent again before its {wait} backoff"
        advance(rt, SECOND)
        assert tick(rt) == {step}
        assert step_row(rt, step).redispatch_count == count
        assert step_row(rt, step).dispatched_at == rt.clock.now()

    assert claim(rt, step), "the step is still there to be claimed"


def test_a_normal_dispatch_starts_the_series_again(rt_stack: Stack, rt: Runtime) -> None:
    pause = {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}}
    make_automation(rt_stack, [TRIGGER, pause, UPDATE], chain("start", "pause", "after"))
    step = (start_run(rt), "pause")
    advance(rt, STALE + SECOND)
    assert tick(rt) == {step}
    advance(rt, 2 * STALE + SECOND)
    assert tick(rt) == {step}
    assert step_row(rt, step).redispatch_count == 2

    # The message finally arrives: the delay parks the step for an hour, past the horizon.
    assert execute_step(rt, *step) == []
    advance(rt, dt.timedelta(hours=1))
    assert tick(rt) == {step}, "the timer is promoted when it falls due"
    assert step_row(rt, step).redispatch_count == 0

    # Lost again: sent once more after stale_after, not after the 120 s its old count implied.
    advance(rt, STALE + SECOND)
    assert tick(rt) == {step}
    assert step_row(rt, step).redispatch_count == 1


def test_one_tick_sends_at_most_the_cap_oldest_first(rt_stack: Stack, capped_rt: Runtime) -> None:
    rt = capped_rt
    make_automation(rt_stack, [TRIGGER, UPDATE], chain("start", "after"))
    steps = []
    for _ in range(5):
        steps.append((start_run(rt), "after"))
        advance(rt, SECOND)

    advance(rt, STALE)
    assert tick(rt) == set(steps[:3])
    assert tick(rt) == set(steps[3:]), "the rest are taken at the next tick"
    assert tick(rt) == set()
    assert all(step_row(rt, step).redispatch_count == 1 for step in steps)


def test_an_expired_lease_is_recovered_at_once_then_backs_off(rt_stack: Stack, rt: Runtime) -> None:
    make_automation(rt_stack, [TRIGGER, UPDATE], chain("start", "after"))
    step = (start_run(rt), "after")
    # Stuck behind a backlog long enough to be re-sent twice, then a worker takes it and dies.
    advance(rt, STALE + SECOND)
    assert tick(rt) == {step}
    advance(rt, 2 * STALE + SECOND)
    assert tick(rt) == {step}
    assert claim(rt, step)

    advance(rt, LEASE - SECOND)
    assert tick(rt) == set(), "the lease still runs"
    advance(rt, 2 * SECOND)
    assert tick(rt) == {step}, "recovered at the first tick after the lease, whatever came before"
    assert step_row(rt, step).redispatch_count == 1
    assert tick(rt) == set()

    advance(rt, 2 * STALE - SECOND)
    assert tick(rt) == set()
    advance(rt, SECOND)
    assert tick(rt) == {step}
    assert step_row(rt, step).redispatch_count == 2
    assert claim(rt, step), "a worker can claim it again"


class Dropped:
    """A dispatcher whose messages go nowhere."""

    def dispatch(self, dispatches: list[Message]) -> None:
        return None


def test_a_start_sends_at_once_a_step_whose_lease_ran_out_and_was_sent_again(
    rt_stack: Stack, rt: Runtime
) -> None:
    """The embedded executor died after the sweeper had sent an abandoned step again: that
    message died with it, so the next start sends the step at once, not after the backoff."""
    make_automation(rt_stack, [TRIGGER, UPDATE], chain("start", "after"))
    step = (start_run(rt), "after")
    assert claim(rt, step)
    advance(rt, LEASE + SECOND)
    assert tick(rt) == {step}
    advance(rt, SECOND)

    take_over(rt, Dropped())
    advance(rt, SECOND)
    assert tick(rt) == {step}
    row = step_row(rt, step)
    assert (row.redispatch_count, row.worker_losses) == (1, 1), "one death, counted once"


def test_two_ticks_at_once_send_each_step_once_and_count_each_death_once(
    rt_stack: Stack, rt: Runtime
) -> None:
    """Two beats by mistake (or a tick queued while another runs): their sweeps overlap."""
    make_automation(rt_stack, [TRIGGER, UPDATE], chain("start", "after"))
    lost = [(start_run(rt), "after") for _ in range(20)]
    abandoned = [(start_run(rt), "after") for _ in range(20)]
    for step in abandoned:
        assert claim(rt, step)
    advance(rt, LEASE + SECOND)
    gate = threading.Barrier(2)
    found: list[set[StepId]] = []

    def overlapping_tick() -> None:
        with transaction(rt.sessions) as session:
            gate.wait()
            found.append({(d.run_id, d.step_key) for d in sweep(session, rt, now=rt.clock.now())})

    threads = [threading.Thread(target=overlapping_tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = found
    assert first & second == set(), "no step sent by both"
    assert first | second == set(lost) | set(abandoned)
    assert [step_row(rt, step).worker_losses for step in abandoned] == [1] * len(abandoned)
    assert tick(rt) == set()
