"""Simulate a run: the real engine plays an automation for one contact on virtual time.

The same ingestion, executor, step handlers, conditions, templates and validation as a real run
execute against a throwaway store (engine.sandbox) on a clock this module moves, with a transport
that records instead of sending. The real database is only read, in one read-only transaction,
before the run starts; nothing is stored, sent or published.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine.db import transaction
from engine.dispatch import Dispatch
from engine.errors import AutomationsError, InvalidInput
from engine.executor import execute_step
from engine.graph import Graph
from engine.ingest import ingest_event
from engine.logs import quiet
from engine.mail.message import OutgoingEmail, added_headers, message_id
from engine.reports import in_graph_order
from engine.runtime import Runtime
from engine.sandbox import Sandbox, open_sandbox, read_catalogue
from engine.scenario import LaterEvent, Scenario, within
from engine.store import automations as automation_store
from engine.store import reports as report_store
from engine.store import runs as run_store
from engine.store import sandbox as sandbox_store
from models.enums import RUN_TERMINAL, AutomationStatus, StepStatus, StepType
from models.tables import RunStep

WAITING = "waiting"  # the answer's status for a run still going when the simulation stops
# Virtual time moves this much before each step and each event, as real time would: what
# happened first is earlier, so "an event received after the wait began" means the same as in
# a real run. Answers show whole seconds, so the ticks never show.
TICK = dt.timedelta(milliseconds=1)


class Runaway(AutomationsError):
    """The run did not settle within its bound of step executions: an engine bug, not input."""


@dataclass(frozen=True)
class SimulatedStep:
    key: str
    type: str
    status: str
    at: dt.timedelta  # when the step reached its status, from the start
    output: dict[str, Any] | None
    error: dict[str, Any] | None
    skip_reason: str | None = None  # unsubscribed, branch_not_taken or contact_deleted


@dataclass(frozen=True)
class SimulatedEmail:
    step_key: str
    at: dt.timedelta
    to: str
    sender: str
    subject: str
    html: str | None
    text: str | None
    headers: dict[str, str]


@dataclass(frozen=True)
class ArrivedEvent:
    name: str
    at: dt.timedelta
    resumed: str | None  # the key of the wait it resumed, if any


@dataclass(frozen=True)
class Simulation:
    status: str  # completed, failed, skipped, or waiting
    duration: dt.timedelta
    steps: list[SimulatedStep]
    emails: list[SimulatedEmail]
    events: list[ArrivedEvent]


def simulate(rt: Runtime, scenario: Scenario) -> Simulation:
    """Play the scenario's run to its end (or `until`) and say what it did; nothing persists."""
    start = rt.clock.now()
    with transaction(rt.sessions) as session:
        sandbox_store.read_only(session)
        graph = scenario.graph or _stored_graph(session, scenario.automation_id)
        trigger = _trigger_event(graph, scenario)
        names = {trigger, *(event.name for event in scenario.events)}
        catalogue = read_catalogue(session, graph, names, scenario.contact)
    with quiet(), open_sandbox(rt.settings, start) as box:
        seeded = box.seed(catalogue, scenario.contact, graph)
        return _Play(box, scenario, graph, seeded.email, seeded.automation_id).run(trigger)


def _stored_graph(session: Session, automation_id: uuid.UUID | None) -> Graph:
    assert automation_id is not None
    data = sandbox_store.current_graph(session, automation_id)
    if data is None:
        raise InvalidInput(
            f"`automation_id`: no automation has the id {automation_id}", field="automation_id"
        )
    return Graph.from_dict(data)


def _trigger_event(graph: Graph, scenario: Scenario) -> str:
    trigger = graph.event_name
    if scenario.event_name is not None and scenario.event_name != trigger:
        raise InvalidInput(
            f"`event.name` is `{scenario.event_name}`, but the automation's trigger listens "
            f"for `{trigger}`",
            field="event.name",
        )
    return trigger


class _Play:
    """The driver: executes what is ready, then jumps the clock to the next due step or event."""

    def __init__(
        self,
        box: Sandbox,
        scenario: Scenario,
        graph: Graph,
        email: str,
        automation_id: uuid.UUID,
    ) -> None:
        self.box, self.scenario, self.graph = box, scenario, graph
        self.email, self.automation_id = email, automation_id
        self.ready: deque[Dispatch] = deque()
        self.arrived: list[ArrivedEvent] = []
        # Each step executes at most twice (a delay or wait parks, then resumes), once more per
        # event: far past that, the run is not settling and the loop must not spin.
        self.budget = 4 * len(graph.steps) + 2 * len(scenario.events) + 20

    def run(self, trigger: str) -> Simulation:
        run_id = self._start(trigger)
        later = deque(self.scenario.events)
        until = self.box.start + self.scenario.until if self.scenario.until else None
        while True:
            self._drain()
            # An ended run has no step left to wait for a time; a running one always has one
            # (every delay and wait has a due time), so this also says whether it ended.
            due_at, due = self._next_due(run_id)
            event_at = self.box.start + later[0].after if later else None
            upcoming = [t for t in (due_at, event_at) if t is not None]
            if not upcoming:
                break
            moment = min(upcoming)
            if until is not None and moment > until:
                self._advance_to(until)
                break
            self._advance_to(moment)
            # Later events are timed from the trigger, due steps from ticked executions after
            # it: an event at a step's nominal time ("paid after 2 days" against a 2-day
            # timeout) arrives just before it, as it would in a real run.
            if event_at is not None and (due_at is None or event_at <= due_at):
                self._arrive(later.popleft(), run_id)
            else:
                self.ready.extend(Dispatch(run_id, key, kind) for key, kind in due)
        return self._answer(run_id)

    # -- moving the run ------------------------------------------------------------------------

    def _start(self, trigger: str) -> uuid.UUID:
        rt = self.box.runtime
        with self.box.session() as session, within("event"):
            result = ingest_event(
                session,
                rt,
                event=trigger,
                email=self.email,
                payload=self.scenario.payload,
                now=self.box.clock.now(),
            )
            # Later events reach the run being simulated; one named like the trigger would
            # start a second run in production, which is another simulation's business.
            automation_store.set_status(
                session, self.automation_id, AutomationStatus.DISABLED, rt.clock.now()
            )
        self.ready.extend(result.dispatches)
        (run_id,) = result.run_ids
        return run_id

    def _arrive(self, event: LaterEvent, run_id: uuid.UUID) -> None:
        self.box.clock.advance(TICK)
        with self.box.session() as session, within(event.field):
            result = ingest_event(
                session,
                self.box.runtime,
                event=event.name,
                email=self.email,
                payload=event.payload,
                now=self.box.clock.now(),
            )
        self.ready.extend(result.dispatches)
        resumed = next((key for rid, key in result.resumed if rid == run_id), None)
        self.arrived.append(ArrivedEvent(event.name, event.after, resumed))

    def _drain(self) -> None:
        """Execute every ready step, and the steps they make ready, as workers would."""
        while self.ready:
            dispatch = self.ready.popleft()
            if dispatch.countdown > 0:
                continue  # parked with a due time: _next_due finds it when the clock gets there
            self.budget -= 1
            if self.budget < 0:
                raise Runaway("The simulated run did not settle; this is a bug in the engine")
            self.box.clock.advance(TICK)
            runtime = self.box.runtime
            self.ready.extend(
                execute_step(runtime, dispatch.run_id, dispatch.step_key, dispatch.step_type)
            )

    def _advance_to(self, moment: dt.datetime) -> None:
        gap = moment - self.box.clock.now()
        if gap > dt.timedelta(0):
            self.box.clock.advance(gap)

    def _next_due(self, run_id: uuid.UUID) -> tuple[dt.datetime | None, list[tuple[str, str]]]:
        with self.box.session() as session:
            return sandbox_store.next_due(session, run_id)

    # -- the answer ----------------------------------------------------------------------------

    def _answer(self, run_id: uuid.UUID) -> Simulation:
        start = self.box.start
        with self.box.session() as session:
            run = run_store.get_run(session, run_id)
            assert run is not None
            rows = in_graph_order(report_store.run_steps(session, run_id), self.graph.order())
        ended = run.status in RUN_TERMINAL
        finished = run.completed_at if ended and run.completed_at else self.box.clock.now()
        # As a timeline: by when each step got its status (to the tick, finer than the answer
        # shows), then by when it was reached, then in graph order.
        order = sorted(range(len(rows)), key=lambda i: (_moment(rows[i]), rows[i].created_at, i))
        steps = [_step(rows[i], start) for i in order]
        return Simulation(
            status=run.status if ended else WAITING,
            duration=_seconds(finished - start),
            steps=steps,
            emails=self._emails(steps),
            events=self.arrived,
        )

    def _emails(self, steps: list[SimulatedStep]) -> list[SimulatedEmail]:
        sent_by = {
            str(step.output.get("email_id")): step
            for step in steps
            if step.type == StepType.SEND_EMAIL and step.output and step.status != "skipped"
        }
        emails = []
        for email in self.box.transport.sent:
            step = sent_by.get(email.email_id)
            if step is not None:
                emails.append(_email(email, step))
        return emails


def _moment(row: RunStep) -> dt.datetime:
    """When the step got its present status: finished, or started (parked), or reached."""
    done = row.status not in (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.WAITING)
    return (row.completed_at if done else None) or row.started_at or row.created_at


def _step(row: RunStep, start: dt.datetime) -> SimulatedStep:
    moment = _moment(row)
    return SimulatedStep(
        key=row.step_key,
        type=row.step_type,
        status=row.status,
        at=_seconds(moment - start),
        output=row.output,
        error=row.error,
        skip_reason=row.skip_reason,
    )


def _seconds(value: dt.timedelta) -> dt.timedelta:
    """Whole seconds: what is left are the ticks, which are not the run's time."""
    return dt.timedelta(seconds=int(value.total_seconds()))


def _email(email: OutgoingEmail, step: SimulatedStep) -> SimulatedEmail:
    """The email as it would go out, with the headers the transport would add."""
    headers = {"Message-ID": message_id(email)}
    if email.reply_to:
        headers["Reply-To"] = ", ".join(email.reply_to)
    headers.update(added_headers(email))
    return SimulatedEmail(
        step_key=step.key,
        at=step.at,
        to=", ".join(email.to),
        sender=email.sender,
        subject=email.subject,
        html=email.html,
        text=email.text,
        headers=headers,
    )
