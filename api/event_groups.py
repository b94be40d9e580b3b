"""The front door of POST /events/send: events that arrive together are written together.

A request's event waits in a list; if fewer than `max_writers` groups are being written, a
writer starts. A writer takes what waits (up to `max_group` events), has it committed in a
worker thread as one transaction (engine/group_commit.py), answers each request, and takes
the next group until none waits. A request alone is written at once (no timer: an idle server
answers as fast as before); under load, the events that arrived during one commit share the
next. Requests wait on the event loop, not in threads: no thread hop per request.
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from engine.dispatch import Dispatcher
from engine.group_commit import MAX_GROUP, commit_group
from engine.ingest import EventRequest, Ingested
from engine.runtime import Runtime

# Groups written at once per process. Measured with two API processes on two cores, wrk with
# 32 connections: one writer each 1,724-1,815 events/s, two 1,330-1,435, four 1,090-1,099
# (smaller groups, more CPU per event); with 4 connections p50 8.3-9.5 ms whatever the number.
MAX_WRITERS = 1

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
    ) -> None:
        if max_group < 1 or max_writers < 1:
            raise ValueError("a group holds at least one event, and one group is written at once")
        self._rt = rt
        self._dispatcher = dispatcher
        self._max_group = max_group
        self._max_writers = max_writers
        self._waiting: list[_Waiting] = []
        self._writing = 0  # counted here, not by the tasks: a finished task leaves the set late
        self._tasks: set[asyncio.Task[None]] = set()

    async def ingest(self, request: EventRequest) -> Ingested:
        """The event stored, its runs started and committed, its messages published; or its
        own error (InvalidInput, NotFound...) raised, as `ingest_event` does."""
        answer: asyncio.Future[Ingested] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, answer))
        if self._writing < self._max_writers:
            self._writing += 1
            writer = asyncio.create_task(self._write())
            self._tasks.add(writer)  # a reference until it ends, or it could be collected
            writer.add_done_callback(self._tasks.discard)
        return await answer

    async def _write(self) -> None:
        try:
            while self._waiting:  # checked and left with no await between: no event is left behind
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                await self._commit(group)
        except BaseException:  # cancelled (the server stops): so are the requests still waiting
            for _, answer in self._waiting:
                answer.cancel()
            raise
        finally:
            self._writing -= 1

    async def _commit(self, group: list[_Waiting]) -> None:
        try:
            outcomes = await run_in_threadpool(
                commit_group,
                self._rt,
                self._dispatcher,
                [request for request, _ in group],
                committed=self._committed,
            )
        except BaseException as failed:  # the database or the broker: each caller sees it
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
