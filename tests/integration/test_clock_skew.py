"""Hosts whose clocks disagree: every process keeps the database server's time.

A worker whose host clock is minutes behind computes its lease minutes too early; a sweeper
on a correct host then finds the lease run out as soon as the step is claimed, and sends a
step that is still sending to another worker (an email sent twice). With the default clock
(`database`) the worker's time is the database server's, whatever its host says.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from engine.clock import FrozenClock, SystemClock
from engine.db import transaction
from engine.ingest import ingest_event
from engine.runtime import Runtime, create_runtime
from engine.settings import Settings
from engine.store import claims
from engine.sweeper import sweep
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

SKEW = dt.timedelta(minutes=5)
LEASE = dt.timedelta(seconds=120)
SECOND = dt.timedelta(seconds=1)
TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
UPDATE = {"key": "after", "type": "contact_update", "config": {"first_name": "Skewed"}}


class Behind(SystemClock):
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) - SKEW


@pytest.fixture
def worker_behind(rt_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A runtime built as a worker builds it, with the default clock, on a host whose clock
    is five minutes behind."""
    monkeypatch.setattr(SystemClock, "now", Behind.now)
    default_clock = Settings.model_fields["clock"].default
    settings = rt_stack.settings.model_copy(
        update={"clock": default_clock, "step_lease_seconds": LEASE.total_seconds()}
    )
    runtime = create_runtime(settings)
    yield runtime
    runtime.sessions.kw["bind"].dispose()


def server_now(rt: Runtime) -> dt.datetime:
    with transaction(rt.sessions) as session:
        value: dt.datetime = session.execute(text("SELECT clock_timestamp()")).scalar_one()
        return value


def test_a_worker_minutes_behind_keeps_the_database_time(
    rt_stack: Stack, worker_behind: Runtime
) -> None:
    rt = worker_behind
    assert abs(rt.clock.now() - server_now(rt)) < dt.timedelta(seconds=2)


def test_a_worker_minutes_behind_does_not_lose_its_lease_to_a_correct_sweeper(
    rt_stack: Stack, worker_behind: Runtime
) -> None:
    rt = worker_behind
    make_automation(rt_stack, [TRIGGER, UPDATE], chain("start", "after"))
    with transaction(rt.sessions) as session:
        ingested = ingest_event(
            session, rt, event="user.created", email=unique_email(), now=rt.clock.now()
        )
    (run_id,) = ingested.run_ids

    now = rt.clock.now()  # the worker claims the step, as the executor does
    with transaction(rt.sessions) as session:
        claimed = claims.claim_step(session, run_id, "after", now=now, lease_until=now + rt.lease)
    assert claimed is not None

    # The sweeper runs on a host whose clock is right, a few seconds later.
    sweeper = create_runtime(rt.settings, clock=FrozenClock(server_now(rt) + 5 * SECOND))
    try:
        with transaction(sweeper.sessions) as session:
            sent = sweep(session, sweeper, now=sweeper.clock.now())
    finally:
        sweeper.sessions.kw["bind"].dispose()
    assert (run_id, "after") not in {(d.run_id, d.step_key) for d in sent}, (
        "a step still in its worker's hands was sent again"
    )
