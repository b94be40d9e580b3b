"""The front door of POST /events/send: events that arrive together are written together.

A request's event waits in a list; if fewer than `max_writers` groups are being written, a
writer starts. A writer takes what waits (up to `max_group` events), has it committed in a
worker thread as one transaction (engine/group_commit.py), has its messages sent (never
waiting for a broker known to be down: engine/after_commit.py), answers each request, and
takes the next group until none waits. A request alone is written at once (an idle server
answers as fast as before); under load, the events that arrived during one commit share the
next. Requests wait on the event loop, not in threads: no thread hop per request.

Under load, callers come back as soon as they are answered. Had the writer stopped when none
was waiting, the first caller back would have been written alone, and the rest of its cohort a
commit later: groups of 1 and 31 where 32 connections wait, a transaction's fixed cost paid
twice. So a writer that finds fewer events than its last group, within a commit's time of that
group's end, waits for the rest of them a little (a fraction of the last commit, at most
`MAX_GATHER` seconds) before it writes.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.concurrency import run_in_threadpool

from engine.after_commit import after_commit
from engine.dispatch import Dispatcher
from engine.group_commit import MAX_GROUP, commit_group
from engine.ingest import EventRequest, Ingested
from engine.runtime import Runtime

# Groups written at once per process. Measured with two API processes on two cores, wrk with
# 32 connections: one writer each 1,724-1,815 events/s, two 1,330-1,435, four 1,090-1,099
# (smaller groups, more CPU per event); with 4 connections p50 8.3-9.5 ms whatever the number.
MAX_WRITERS = 1
# The longest a writer waits for the rest of a cohort, and the part of the last commit's time
# it waits at most: a bound on what gathering adds to any request's latency.
MAX_GATHER = 0.002
GATHER_SHARE = 0.5

_Waiting = tuple[EventRequest, "asyncio.Future[Ingested]"]


class EventGroups:
    """Ingests single events for the requests of one event loop, in shared transactions."""

    def __init__(
        self,
        rt: Runtime,
        dispatcher: Dispatcher,
        *,
        max_group: int = MAX_GROUP,
        max_writers: int = MAX_WRITERS,
        max_gather: float = MAX_GATHER,
    ) -> None:
        if max_group < 1 or max_writers < 1:
            raise ValueError("a group holds at least one event, and one group is written at once")
        self._rt = rt
        # Callers are answered once their events have committed: a publish that fails is the
        # sweeper's to heal, not theirs to retry (engine/after_commit.py).
        self._dispatcher = after_commit(dispatcher)
        self._max_group = max_group
        self._max_writers = max_writers
        self._max_gather = max_gather
        self._waiting: list[_Waiting] = []
        self._writing = 0  # counted here, not by the tasks: a finished task leaves the set late
        self._tasks: set[asyncio.Task[None]] = set()
        # The last group written: its size, when its commit ended and how long it took.
        self._cohort = 0
        self._ended = 0.0
        self._took = 0.0
        self._enough: asyncio.Event | None = None  # set when enough wait, while a writer gathers

    async def ingest(self, request: EventRequest) -> Ingested:
        """The event stored, its runs started and committed, its messages published; or its
        own error (InvalidInput, NotFound...) raised, as `ingest_event` does."""
        answer: asyncio.Future[Ingested] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, answer))
        if self._enough is not None and len(self._waiting) >= self._cohort:
            self._enough.set()
        if self._writing < self._max_writers:
            self._writing += 1
            writer = asyncio.create_task(self._write())
            self._tasks.add(writer)  # a reference until it ends, or it could be collected
            writer.add_done_callback(self._tasks.discard)
        return await answer

    async def _write(self) -> None:
        try:
            while self._waiting:  # checked and left with no await between: no event is left behind
                await self._gather()
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                started = asyncio.get_running_loop().time()
                await self._commit(group)
                self._ended = asyncio.get_running_loop().time()
                self._cohort, self._took = len(group), self._ended - started
        except BaseException:  # cancelled (the server stops): so are the requests still waiting
            for _, answer in self._waiting:
                answer.cancel()
            raise
        finally:
            self._writing -= 1

    async def _gather(self) -> None:
        """Wait a little for the rest of the last group's callers, if they are on their way."""
        since = asyncio.get_running_loop().time() - self._ended
        if len(self._waiting) >= min(self._cohort, self._max_group) or since > self._took:
            return  # enough to write, or the load is gone: an idle server does not wait
        wait = min(self._max_gather, self._took * GATHER_SHARE)
        self._enough = asyncio.Event()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._enough.wait(), wait)
        finally:
            self._enough = None

    async def _commit(self, group: list[_Waiting]) -> None:
        try:
            outcomes = await run_in_threadpool(
                commit_group,
                self._rt,
                self._dispatcher,
                [request for request, _ in group],
                committed=self._committed,
            )
        except BaseException as failed:  # the database: each caller sees it
            for _, answer in group:
                if not answer.done():
                    answer.set_exception(failed)
            if not isinstance(failed, Exception):
                raise
            return
        for (_, answer), outcome in zip(group, outcomes, strict=True):
            if answer.done():  # its caller went away; the event stands
                continue
            if isinstance(outcome, Ingested):
                answer.set_result(outcome)
            else:
                answer.set_exception(outcome)

    def _committed(self) -> None:
        self._rt.checkpoint("events.before_publish")  # a fault test kills the process here
