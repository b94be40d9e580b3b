"""Plays runs in this process: executes what the engine asks to enqueue, jumps the frozen clock
to the next due step when nothing is ready, and sweeps as the scheduler would."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from engine import lifecycle, sweeper
from engine.bulk import work_chunk
from engine.clock import FrozenClock
from engine.db import transaction
from engine.dispatch import BulkWork, CancelWork, Dispatch, Message, commit_then_dispatch
from engine.executor import execute_step
from engine.ingest import Ingested, ingest_event
from engine.lifecycle import create_automation
from engine.mail.recording import RecordingTransport
from engine.runtime import Runtime
from engine.store import content as content_store
from models.enums import STEP_CLAIMABLE, DomainStatus, TemplateStatus
from models.tables import Run, RunStep

T0 = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)
# A run that takes more than this many executions is looping.
MAX_EXECUTIONS = 10_000


class Driver:
    """The runtime, and the queue a broker would be: nothing leaves this process."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.queue: deque[Message] = deque()
        self.executions = 0

    @property
    def clock(self) -> FrozenClock:
        assert isinstance(self.rt.clock, FrozenClock)
        return self.rt.clock

    @property
    def sent(self) -> list[Any]:
        transport = self.rt.transport
        assert isinstance(transport, RecordingTransport)
        return transport.sent

    # -- set-up ------------------------------------------------------------------------------

    def automation(
        self, steps: list[dict[str, Any]], connections: list[dict[str, Any]]
    ) -> uuid.UUID:
        with transaction(self.rt.sessions) as session:
            created = create_automation(
                session,
                name="engine tier",
                status="enabled",
                steps=steps,
                connections=connections,
                now=self.clock.now(),
            )
            return created.id

    def template(self, *, published: bool = True, subject: str = "Hi {{{NAME}}}") -> str:
        with transaction(self.rt.sessions) as session:
            content_store.create_domain(
                session, name="acme.test", now=self.clock.now(), status=DomainStatus.VERIFIED
            )
            template = content_store.create_template(
                session,
                name="t",
                now=self.clock.now(),
                status=TemplateStatus.PUBLISHED if published else TemplateStatus.DRAFT,
                subject=subject,
                sender="Acme <hi@acme.test>",
                html="<p>Hi {{{NAME}}}</p>",
                variables=[{"key": "NAME", "type": "string", "fallback_value": "there"}],
            )
            return str(template.id)

    # -- playing -----------------------------------------------------------------------------

    def send(self, event: str, email: str, payload: dict[str, Any] | None = None) -> Ingested:
        return commit_then_dispatch(
            transaction(self.rt.sessions),
            self,
            lambda session: ingest_event(
                session, self.rt, event=event, email=email, payload=payload, now=self.clock.now()
            ),
        )

    def enqueue(self, messages: list[Message]) -> None:
        self.queue.extend(messages)

    def settle(self, *, until: dt.datetime | None = None) -> None:
        """Work the queue; when it is empty, jump to the next due step (not past `until`), and
        let the sweeper send it, as the scheduler would."""
        stale = dt.timedelta(seconds=self.rt.settings.stale_after_seconds + 1)
        while True:
            self._drain()
            due = self._next_due()
            if due is None or (until is not None and due > until):
                return
            self.clock.advance(max(due - self.clock.now(), dt.timedelta(0)))
            self.tick()
            if not self.queue:
                # Due but already sent once: the sweeper sends it again once it looks lost.
                self.clock.advance(stale)
                self.tick()
                assert self.queue, "a due step the sweeper does not send"

    def tick(self) -> None:
        """One sweeper tick at the clock's time."""
        sweeper.tick(self.rt, self)

    # -- the Dispatcher that the engine hands messages to ----------------------------------

    def dispatch(self, messages: Sequence[Message]) -> None:
        self.queue.extend(messages)

    def ping(self) -> None:
        return None

    def _drain(self) -> None:
        while self.queue:
            message = self.queue.popleft()
            self.executions += 1
            assert self.executions < MAX_EXECUTIONS, "a run is looping"
            if isinstance(message, BulkWork):
                self.queue.extend(work_chunk(self.rt, message.bulk_id))
                continue
            if isinstance(message, CancelWork):
                self.queue.extend(lifecycle.work_cancel(self.rt, message.automation_id))
                continue
            if message.countdown > 0:
                self.clock.advance(dt.timedelta(seconds=message.countdown))
            self.queue.extend(execute_step(self.rt, message.run_id, message.step_key))

    def _next_due(self) -> dt.datetime | None:
        with transaction(self.rt.sessions) as session:
            return session.scalar(
                select(RunStep.due_at)
                .where(RunStep.status.in_(STEP_CLAIMABLE), RunStep.due_at.is_not(None))
                .order_by(RunStep.due_at)
                .limit(1)
            )

    # -- reading -----------------------------------------------------------------------------

    def run(self, run_id: uuid.UUID) -> Run:
        with transaction(self.rt.sessions) as session:
            found = session.get(Run, run_id)
            assert found is not None
            return found

    def steps(self, run_id: uuid.UUID) -> dict[str, RunStep]:
        with transaction(self.rt.sessions) as session:
            rows = session.scalars(select(RunStep).where(RunStep.run_id == run_id))
            return {row.step_key: row for row in rows}

    def dispatched(self) -> list[Dispatch]:
        return [m for m in self.queue if isinstance(m, Dispatch)]
