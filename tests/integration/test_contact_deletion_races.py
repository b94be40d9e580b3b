"""Deletions of one contact at once, from steps and from the API, on real PostgreSQL.

Each side is a thread with its own sessions, as two workers (or a worker and the API) are. Every
deletion locks the contact first, as every writer of a contact does: of two at once, one waits
for the other and then finds the contact gone; none ever fails with a deadlock.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from engine import contacts, recovery
from engine.clock import FrozenClock
from engine.db import transaction
from engine.errors import NotFound
from engine.executor import execute_step
from engine.runtime import Runtime, create_runtime
from engine.store import contacts as contact_store
from tests.integration.factories import chain, make_automation
from tests.integration.harness import Stack
from tests.integration.test_contact_races import T0, wait_until_blocked
from tests.integration.test_races import Gate, ingest

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

ROUNDS = 12


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=5) as executor:
        yield executor


class Meeting:
    """A checkpoint where each side waits (briefly) for the other before it goes on: both then
    hold what they took before it. A side that cannot come (it waits for a lock) is not waited
    for long."""

    def __init__(self, point: str, parties: int) -> None:
        self.point = point
        self.barrier = threading.Barrier(parties)

    def __call__(self, name: str) -> None:
        if name == self.point:
            with contextlib.suppress(threading.BrokenBarrierError):
                self.barrier.wait(timeout=0.3)


class Workers:
    """A few runtimes, one per side, reused round after round (each holds a connection pool);
    `meeting` is the checkpoint of the round under way."""

    def __init__(self, stack: Stack, count: int) -> None:
        self.meeting: Callable[[str], None] = lambda _: None
        self.runtimes = [
            create_runtime(
                stack.settings.model_copy(update={"inline_steps": 0}),
                clock=FrozenClock(T0),
                checkpoint=lambda name: self.meeting(name),
            )
            for _ in range(count)
        ]

    def close(self) -> None:
        for rt in self.runtimes:
            rt.sessions.kw["bind"].dispose()


@pytest.fixture
def workers(rt_stack: Stack) -> Iterator[Workers]:
    held = Workers(rt_stack, 4)
    yield held
    held.close()


def erasing_automation(stack: Stack) -> None:
    make_automation(
        stack,
        [
            {"key": "start", "type": "trigger", "config": {"event_name": "bye"}},
            {"key": "erase", "type": "contact_delete"},
        ],
        chain("start", "erase"),
    )


def erasing_runs(rt: Runtime, email: str, count: int) -> list[uuid.UUID]:
    """`count` runs of the contact, each with its contact_delete step next."""
    run_ids = [ingest(rt, "bye", email).run_ids[0] for _ in range(count)]
    for run_id in run_ids:
        execute_step(rt, run_id, "start")
    return run_ids


def assert_erased(stack: Stack, run_ids: list[uuid.UUID], email: str) -> None:
    """Every run ended well: one deleted the contact, the others found it gone."""
    erase = [stack.steps(run_id)["erase"] for run_id in run_ids]
    assert all(step.status in ("completed", "skipped") for step in erase), [
        (step.status, step.error) for step in erase
    ]
    assert [stack.run(run_id).status for run_id in run_ids] == ["completed"] * len(run_ids)
    with transaction(stack.runtime.sessions) as session:
        assert contact_store.get_contact_by_email(session, email) is None


def test_two_contact_delete_steps_of_one_contact_both_holding_their_run(
    rt_stack: Stack, workers: Workers, pool: ThreadPoolExecutor
) -> None:
    """Both steps go as far as they can before the other's deletion; neither deadlocks."""
    erasing_automation(rt_stack)
    for round_ in range(ROUNDS):
        email = f"both-{round_}@example.com"
        run_ids = erasing_runs(workers.runtimes[0], email, 2)
        workers.meeting = Meeting("contact_delete.handler", 2)
        futures = [
            pool.submit(execute_step, rt, run_id, "erase")
            for rt, run_id in zip(workers.runtimes, run_ids, strict=False)
        ]
        for future in futures:
            future.result(timeout=30)
        assert_erased(rt_stack, run_ids, email)


def test_contact_delete_steps_and_an_api_deletion_at_once(
    rt_stack: Stack, workers: Workers, pool: ThreadPoolExecutor
) -> None:
    """Three deletions of one contact, free-running: the steps of two runs and a DELETE from
    the API."""
    erasing_automation(rt_stack)
    api_side = workers.runtimes[2]

    def delete_by_api(email: str) -> None:
        try:
            with transaction(api_side.sessions) as session:
                contacts.delete_contact(session, email, now=T0)
        except NotFound:
            pass  # a step deleted it first

    for round_ in range(ROUNDS * 2):
        email = f"three-{round_}@example.com"
        run_ids = erasing_runs(workers.runtimes[0], email, 2)
        futures = [
            pool.submit(execute_step, rt, run_id, "erase")
            for rt, run_id in zip(workers.runtimes, run_ids, strict=False)
        ]
        futures.append(pool.submit(delete_by_api, email))
        for future in futures:
            future.result(timeout=30)
        assert_erased(rt_stack, run_ids, email)


def test_deleting_two_contacts_that_share_segments(
    rt_stack: Stack, workers: Workers, pool: ThreadPoolExecutor
) -> None:
    """Two contacts in the same two segments, each deleted by two of its runs at once, while
    one of the segments is deleted too."""
    erasing_automation(rt_stack)
    for round_ in range(ROUNDS // 2):
        emails = [f"shared-{round_}-{n}@example.com" for n in range(2)]
        with transaction(rt_stack.runtime.sessions) as session:
            segments = [contacts.create_segment(session, name=f"s{n}", now=T0).id for n in (1, 2)]
        runs: list[uuid.UUID] = []
        for email in emails:
            runs += erasing_runs(workers.runtimes[0], email, 2)
            with transaction(rt_stack.runtime.sessions) as session:
                for segment_id in segments:
                    contacts.add_to_segment(session, email, segment_id, now=T0)

        def delete_segment(segment_id: uuid.UUID = segments[0]) -> None:
            with transaction(rt_stack.runtime.sessions) as session:
                contacts.delete_segment(session, segment_id, now=T0)

        workers.meeting = Meeting("contact_delete.handler", 4)
        futures: list[Future[Any]] = [
            pool.submit(execute_step, rt, run_id, "erase")
            for rt, run_id in zip(workers.runtimes, runs, strict=True)
        ]
        futures.append(pool.submit(delete_segment))
        for future in futures:
            future.result(timeout=30)
        assert_erased(rt_stack, runs[:2], emails[0])
        assert_erased(rt_stack, runs[2:], emails[1])


def test_replaying_a_run_while_its_contact_is_deleted(
    rt_stack: Stack, workers: Workers, pool: ThreadPoolExecutor
) -> None:
    """The replay holds the old run when the deletion comes: the deletion, which locks the
    contact and then the runs, waits for it (the replay held the contact first)."""
    automation_id = make_automation(
        rt_stack,
        [
            {"key": "start", "type": "trigger", "config": {"event_name": "go"}},
            {"key": "act", "type": "contact_update", "config": {"first_name": "Ada"}},
        ],
        chain("start", "act"),
    )
    rt = workers.runtimes[0]
    (run_id,) = ingest(rt, "go", "ada@example.com").run_ids
    execute_step(rt, run_id, "start")
    execute_step(rt, run_id, "act")
    assert rt_stack.run(run_id).status == "completed"
    gate = Gate("replay.run_locked")
    workers.meeting = gate

    def replay() -> uuid.UUID:
        with transaction(rt.sessions) as session:
            return recovery.replay_run(session, rt, automation_id, run_id, now=T0).run_id

    def delete() -> uuid.UUID:
        with transaction(workers.runtimes[1].sessions) as session:
            return contacts.delete_contact(session, "ada@example.com", now=T0)

    replaying = pool.submit(replay)
    assert gate.reached.wait(10)
    deleting = pool.submit(delete)
    wait_until_blocked(rt_stack)
    gate.release.set()
    replayed = replaying.result(timeout=20)
    deleting.result(timeout=20)

    assert rt_stack.run(replayed).contact_id is None  # made first, then its contact deleted
    assert rt_stack.run(run_id).contact_id is None
