"""Run the same inputs through the simulator and through a real run, and compare the two."""

from __future__ import annotations

import datetime as dt
import email.message
import uuid
from dataclasses import dataclass, field
from typing import Any

from engine.scenario import parse_scenario
from engine.simulation import Simulation, simulate
from models.enums import RUN_TERMINAL
from models.tables import RunStep
from tests.integration.factories import make_contact, unique_email
from tests.integration.harness import Stack

# Ids and instants differ between two runs of the same inputs: everything else must not.
VOLATILE = frozenset(
    {"email_id", "event_id", "resume_at", "resumed_at", "timeout_at", "received_at"}
)
# The real run's clock also moves with the wall clock and the sweeper's steps of a second.
AT_TOLERANCE = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Later:
    name: str
    after: dt.timedelta
    payload: dict[str, Any] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        minutes = int(self.after.total_seconds() // 60)
        return {"name": self.name, "after": f"{minutes} minutes", "payload": self.payload}


@dataclass(frozen=True)
class Inputs:
    automation_id: uuid.UUID
    payload: dict[str, Any] = field(default_factory=dict)
    later: tuple[Later, ...] = ()
    contact: dict[str, Any] = field(default_factory=dict)
    trigger: str = "user.created"


@dataclass(frozen=True)
class Compared:
    simulation: Simulation
    run_id: uuid.UUID
    email: str


def simulate_inputs(stack: Stack, inputs: Inputs, contact_id: uuid.UUID) -> Simulation:
    body = {
        "automation_id": str(inputs.automation_id),
        "contact": {"id": str(contact_id)},
        "event": {"payload": inputs.payload},
        "events": [event.wire() for event in inputs.later],
    }
    return simulate(stack.runtime, parse_scenario(body))


def _settled(stack: Stack, run_id: uuid.UUID) -> bool:
    if stack.run(run_id).status in RUN_TERMINAL:
        return True
    now = stack.clock.now()
    for step in stack.steps(run_id).values():
        if step.status in ("pending", "running"):
            return False
        if step.status == "waiting" and step.due_at is not None and step.due_at <= now:
            return False
    return True


def _next_due(stack: Stack, run_id: uuid.UUID) -> dt.datetime | None:
    if stack.run(run_id).status in RUN_TERMINAL:
        return None
    due = [s.due_at for s in stack.steps(run_id).values() if s.status == "waiting" and s.due_at]
    return min(due) if due else None


def play_real(stack: Stack, inputs: Inputs, address: str) -> uuid.UUID:
    """The real run: the worker executes, the test moves the shared clock as the simulator does
    (to the next due step, or to the next event's offset from the run's start)."""
    (run_id,) = stack.send(inputs.trigger, address, inputs.payload).run_ids
    started = stack.run(run_id).started_at
    pending = sorted(inputs.later, key=lambda event: event.after)
    while True:
        stack.wait_for(lambda: _settled(stack, run_id), what=f"run {run_id} to settle")
        due = _next_due(stack, run_id)
        event_at = started + pending[0].after if pending else None
        if due is None and event_at is None:
            return run_id
        now = stack.clock.now()
        if event_at is not None and (due is None or event_at <= due):
            if event_at > now:
                stack.clock.advance(event_at - now)
            event = pending.pop(0)
            stack.send(event.name, address, event.payload)
        else:
            assert due is not None
            stack.advance(max(due - now, dt.timedelta(0)) + dt.timedelta(seconds=1))


def run_both(stack: Stack, inputs: Inputs) -> Compared:
    """Simulate first (the real run may change the contact), then play the real run."""
    address = unique_email("both")
    contact_id = make_contact(stack, address, **inputs.contact)
    simulation = simulate_inputs(stack, inputs, contact_id)
    run_id = play_real(stack, inputs, address)
    assert_agree(stack, simulation, run_id, address)
    return Compared(simulation, run_id, address)


def without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(item) for item in value]
    return value


def _real_at(step: RunStep, started: dt.datetime) -> dt.timedelta:
    done = step.status not in ("pending", "running", "waiting")
    moment = (step.completed_at if done else None) or step.started_at or step.created_at
    return moment - started


def assert_agree(stack: Stack, simulation: Simulation, run_id: uuid.UUID, address: str) -> None:
    """The same path, statuses, outputs, errors and emails; times within AT_TOLERANCE."""
    run = stack.run(run_id)
    real = stack.steps(run_id)
    assert simulation.status == run.status
    assert {s.key: s.status for s in simulation.steps} == {k: s.status for k, s in real.items()}
    for step in simulation.steps:
        twin = real[step.key]
        assert step.type == twin.step_type, step.key
        assert step.skip_reason == twin.skip_reason, step.key
        assert step.error == twin.error, step.key
        assert without_volatile(step.output) == without_volatile(twin.output), step.key
        assert abs(_real_at(twin, run.started_at) - step.at) < AT_TOLERANCE, step.key
    sent = stack.sink.to(address)
    assert [e.step_key for e in simulation.emails] == [
        s.key for s in simulation.steps if s.type == "send_email" and s.status == "completed"
    ]
    assert len(sent) == len(simulation.emails)
    for simulated, message in zip(simulation.emails, sent, strict=True):
        assert_same_email(simulated, message)


def _body(message: email.message.EmailMessage, kind: str) -> str | None:
    part = message.get_body((kind,))
    if part is None:
        return None
    # On the wire lines end in CRLF, and a body ends with a line break the template did not make.
    content = str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]
    return content.removesuffix("\n")


def assert_same_email(simulated: Any, message: email.message.EmailMessage) -> None:
    assert simulated.subject == message["Subject"]
    assert simulated.sender == message["From"]
    assert simulated.to == message["To"]
    assert (simulated.html or None) == _body(message, "html")
    assert (simulated.text or None) == _body(message, "plain")
    for name in ("List-Unsubscribe", "List-Unsubscribe-Post", "Reply-To"):
        assert simulated.headers.get(name) == message[name], name
    assert simulated.headers["Message-ID"].endswith(message["Message-ID"].split("@")[1])
