"""Group commit of single events: those that arrive together share one transaction, and each
caller still gets its own answer only once its event has committed (or its own error)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from api.event_groups import EventGroups
from engine.after_commit import AfterCommit
from engine.db import transaction
from engine.dispatch import Dispatch, Message
from engine.errors import InvalidInput, NotFound
from engine.group_commit import commit_group
from engine.ingest import EventRequest, Ingested
from models.tables import Event, Run
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import ApiServer, Stack
from tests.loops import run_loop

STEPS = [
    {"key": "start", "type": "trigger", "config": {"event_name": "signed.up"}},
    {"key": "later", "type": "delay", "config": {"duration": "1 day"}},
]


class Recorder:
    """A dispatcher that keeps what it was given, one list per call; `pause` makes each publish
    (and so each group's commit, as its writer sees it) take that many seconds."""

    def __init__(self, fail: bool = False, pause: float = 0) -> None:
        self.calls: list[list[Message]] = []
        self.fail = fail
        self.pause = pause

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        if self.fail:
            raise ConnectionError("broker unreachable")
        time.sleep(self.pause)
        self.calls.append(list(dispatches))

    def ping(self) -> None:
        return None


def count(stack: Stack, table: type) -> int:
    with transaction(stack.runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
def listening(rt_stack: Stack) -> Stack:
    make_automation(rt_stack, STEPS, chain("start", "later"))
    return rt_stack


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
def test_a_refused_event_gets_its_own_error_and_the_others_commit(listening: Stack) -> None:
    recorder = Recorder()
    requests = [
        EventRequest("signed.up", email=unique_email("a")),
        EventRequest("signed.up", contact_id=str(uuid.uuid4())),  # no such contact
        EventRequest("signed.up", email=unique_email("b")),
        EventRequest("signed.up", email="not an address"),
        EventRequest("signed.up", email=unique_email("c")),
    ]
    outcomes = commit_group(listening.runtime, recorder, requests)

    assert [type(outcome) for outcome in outcomes] == [
        Ingested,
        NotFound,
        Ingested,
        InvalidInput,
        Ingested,
    ]
    assert count(listening, Event) == count(listening, Run) == 3
    # One transaction committed, and its messages published in one call: a delay per run.
    assert len(recorder.calls) == 1
    assert {d.run_id for d in recorder.calls[0] if isinstance(d, Dispatch)} == {
        run for outcome in outcomes if isinstance(outcome, Ingested) for run in outcome.run_ids
    }


@pytest.fixture
def gated(listening: Stack) -> Iterator[tuple[Stack, threading.Event, list[str]]]:
    """The runtime's checkpoint held at the first group's publish until the gate opens."""
    rt = listening.runtime
    gate, passed = threading.Event(), []
    held = rt.checkpoint

    def checkpoint(name: str) -> None:
        if name == "events.before_publish":
            passed.append(name)
            if len(passed) == 1:
                gate.wait(timeout=30)

    rt.checkpoint = checkpoint
    yield listening, gate, passed
    rt.checkpoint = held


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_events_that_arrive_during_a_commit_share_the_next_one(
    gated: tuple[Stack, threading.Event, list[str]],
) -> None:
    stack, gate, passed = gated
    recorder = Recorder()
    groups = EventGroups(stack.runtime, recorder, max_writers=1)

    async def scenario() -> list[Ingested]:
        first = asyncio.create_task(groups.ingest(EventRequest("signed.up", email=unique_email())))
        while not passed:  # the first group has committed and waits at its publish
            await asyncio.sleep(0.01)
        rest = [
            asyncio.create_task(groups.ingest(EventRequest("signed.up", email=unique_email())))
            for _ in range(20)
        ]
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in rest)  # no answer before their commit
        gate.set()
        answered = [await first, *[await task for task in rest]]
        await published(recorder, 21)
        return answered

    answers = run_loop(scenario())

    assert len(passed) == 2  # two transactions for 21 events
    assert [len(call) for call in recorder.calls] == [1, 20]
    assert len({answer.event_id for answer in answers}) == 21
    assert count(stack, Event) == count(stack, Run) == 21


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_no_event_is_left_waiting_whenever_it_arrives(listening: Stack) -> None:
    """Requests arriving just as a writer finds nothing more to write still get written."""
    groups = EventGroups(listening.runtime, Recorder())
    pauses = random.Random(7)

    async def arrive(delay: float) -> Ingested:
        await asyncio.sleep(delay)
        return await groups.ingest(EventRequest("signed.up", email=unique_email()))

    async def scenario() -> list[Ingested]:
        arrivals = [arrive(pauses.choice([0, 0, 0.001, 0.003, 0.01])) for _ in range(150)]
        return await asyncio.wait_for(asyncio.gather(*arrivals), timeout=60)

    assert len({answer.event_id for answer in run_loop(scenario())}) == 150
    assert count(listening, Event) == 150


async def cohort(groups: EventGroups, size: int, spread: float) -> None:
    """`size` callers, the first at once and the others one by one over `spread` seconds, as
    the callers of a group come back once answered."""

    async def arrive(delay: float) -> Ingested:
        await asyncio.sleep(delay)
        return await groups.ingest(EventRequest("signed.up", email=unique_email()))

    await asyncio.gather(*(arrive(spread * n / size) for n in range(size)))


async def published(recorder: Recorder, events: int) -> None:
    """Until `events` events' messages are published: callers are answered before that."""
    for _ in range(1000):
        if sum(len(call) for call in recorder.calls) >= events:
            return
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_the_callers_of_a_group_coming_back_one_by_one_are_written_together(
    listening: Stack,
) -> None:
    # Each commit takes 0.3 s as the writer sees it: up to half of that (here at most 0.5 s)
    # is waited for the rest of the last group, which arrives over 0.05 s.
    recorder = Recorder(pause=0.3)
    groups = EventGroups(listening.runtime, recorder, max_gather=0.5)

    async def scenario() -> None:
        await cohort(groups, 8, spread=0)
        await cohort(groups, 8, spread=0.05)
        await published(recorder, 16)

    run_loop(scenario())

    # Without gathering, the first caller back would have been written alone: [8, 1, 7].
    assert [len(call) for call in recorder.calls] == [8, 8]


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_an_event_after_a_pause_is_written_at_once(listening: Stack) -> None:
    recorder = Recorder(pause=0.1)
    groups = EventGroups(listening.runtime, recorder, max_gather=5.0)

    async def scenario() -> None:
        await cohort(groups, 8, spread=0)
        await asyncio.sleep(0.3)  # longer than the last commit took: the load is gone
        await cohort(groups, 4, spread=0.05)
        await published(recorder, 12)

    run_loop(scenario())

    # The first of the four did not wait for the others (it would have for up to 0.05 s).
    assert [len(call) for call in recorder.calls] == [8, 1, 3]


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_a_group_the_broker_refuses_is_answered_by_its_commit(
    listening: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    sender = AfterCommit(Recorder(fail=True))
    groups = EventGroups(listening.runtime, sender)

    async def scenario() -> list[BaseException | Ingested]:
        sends = [groups.ingest(EventRequest("signed.up", email=unique_email())) for _ in range(5)]
        return await asyncio.gather(*sends, return_exceptions=True)

    answers = run_loop(scenario())
    assert sender.flush(5)  # the sending thread has tried, and logged its failure

    # Committed before the publish failed: accepted, and the sweeper sends what was committed.
    # An error here would have the callers send their events again, starting their runs twice.
    assert all(isinstance(answer, Ingested) for answer in answers)
    assert count(listening, Event) == count(listening, Run) == 5
    assert "not sent; the sweeper sends them" in caplog.text


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
def test_concurrent_requests_each_get_their_answer(listening: Stack, api_server: ApiServer) -> None:
    unknown = str(uuid.uuid4())
    bodies = [{"event": "signed.up", "email": unique_email(f"c{n}")} for n in range(60)]
    bodies[17] = {"event": "signed.up", "contact_id": unknown}
    bodies[42] = {"event": "signed.up", "email": "not an address"}

    with api_server.client() as client, ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda body: client.post("/events/send", json=body), bodies))

    codes = [answer.status_code for answer in answers]
    assert codes[17] == 404 and codes[42] == 422
    assert codes.count(202) == 58
    assert "email" in answers[42].json()["message"]
    assert count(listening, Event) == count(listening, Run) == 58


def test_groups_need_room_for_an_event() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        EventGroups(object(), object(), max_group=0)  # type: ignore[arg-type]
