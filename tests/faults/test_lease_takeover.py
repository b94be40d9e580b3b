"""A worker that stalls mid-send past its lease (the hazard the `pause` fault creates), forced.

Worker A claims a send_email step and stalls after the outbox row is committed (a GC pause, a
frozen VM, SIGSTOP). Its lease runs out; the sweeper takes it over, and worker B re-claims the
step, sends the email (same Message-ID) and completes the step. Then A wakes up, its own send
fails, and `_finish_email` records that failure on the outbox row before it checks whether it
still owns the step.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import select

from bench.faultlab.lab import Lab
from engine import sweeper
from engine.clock import FrozenClock
from engine.db import transaction
from engine.errors import StepFailure, TransientStepFailure
from engine.executor import execute_step
from engine.ingest import ingest_event
from engine.lifecycle import create_automation
from engine.mail import OutgoingEmail
from engine.runtime import Runtime
from engine.store import content as content_store
from models.enums import DomainStatus, TemplateStatus
from models.tables import OutboxEmail, RunStep

T0 = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)


class Gate:
    """Parks the thread that reaches `point` until released."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, name: str) -> None:
        if name == self.point:
            self.reached.set()
            assert self.release.wait(10), f"gate {self.point} never released"


class Transport:
    """Sends by calling `outcome`: a provider id, or a raised StepFailure."""

    name = "fake"

    def __init__(self, outcome: Callable[[OutgoingEmail], str]) -> None:
        self.outcome = outcome
        self.sent: list[str] = []

    def send(self, email: OutgoingEmail) -> str:
        self.sent.append(email.email_id)
        return self.outcome(email)

    def close(self) -> None:
        return None


def fails(error: StepFailure) -> Callable[[OutgoingEmail], str]:
    def outcome(_: OutgoingEmail) -> str:
        raise error

    return outcome


def runtime(lab: Lab, now: dt.datetime, transport: Transport, gate: Gate | None = None) -> Runtime:
    return Runtime(
        lab.settings,
        sessions=lab.runtime.sessions,
        clock=FrozenClock(now),
        transport=transport,
        checkpoint=gate or (lambda _: None),
    )


def started_run(lab: Lab) -> uuid.UUID:
    """trigger -> mail -> after, one run whose mail step is pending."""
    lab.reset(transport=lab.transport, chaos=False)
    with transaction(lab.runtime.sessions) as session:
        content_store.create_domain(session, name="acme.test", now=T0, status=DomainStatus.VERIFIED)
        template = content_store.create_template(
            session,
            name="t",
            now=T0,
            status=TemplateStatus.PUBLISHED,
            subject="Hello",
            sender="Acme <hello@acme.test>",
            text_body="Hi",
        )
        create_automation(
            session,
            name="lease",
            status="enabled",
            now=T0,
            steps=[
                {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
                {
                    "key": "mail",
                    "type": "send_email",
                    "config": {"template": {"id": str(template.id)}},
                },
                {"key": "after", "type": "contact_update", "config": {"first_name": "Done"}},
            ],
            connections=[{"from": "start", "to": "mail"}, {"from": "mail", "to": "after"}],
        )
    with transaction(lab.runtime.sessions) as session:
        ingested = ingest_event(
            session, lab.runtime, event="user.created", email="stall@example.test", now=T0
        )
    (run_id,) = ingested.run_ids
    return run_id


@pytest.mark.parametrize(
    "late_error",
    [
        TransientStepFailure("451 try later", code="smtp_unavailable"),
        StepFailure("550 mailbox unavailable", code="smtp_rejected"),
    ],
    ids=["transient", "permanent"],
)
def test_a_stalled_worker_does_not_unmark_an_email_another_worker_sent(
    lab: Lab, late_error: StepFailure
) -> None:
    run_id = started_run(lab)
    gate = Gate("send_email.before_send")
    stalled = Transport(fails(late_error))
    worker_a = threading.Thread(
        target=execute_step, args=(runtime(lab, T0, stalled, gate), run_id, "mail")
    )
    worker_a.start()
    assert gate.reached.wait(10)

    # A's lease has run out: the sweeper takes it over (A counted as lost) and sends the step
    # again; B takes the step, sends, completes it.
    later = T0 + dt.timedelta(seconds=lab.settings.step_lease_seconds + 1)
    sending = Transport(lambda email: f"<{email.email_id}@acme.test>")
    worker_b = runtime(lab, later, sending)
    with transaction(worker_b.sessions) as session:
        sweeper.sweep(session, worker_b, now=later)  # its message: this call to B
    execute_step(worker_b, run_id, "mail")
    gate.release.set()
    worker_a.join(10)

    with transaction(lab.runtime.sessions) as session:
        step = session.get(RunStep, (run_id, "mail"))
        (row,) = session.scalars(select(OutboxEmail).where(OutboxEmail.run_id == run_id))
        assert step is not None and step.status == "completed" and step.attempt == 2
        assert sending.sent == [str(row.id)] and stalled.sent == [str(row.id)]
        # The email went out and its step completed: its outbox row must say so.
        assert (row.status, row.last_error) == ("sent", None)
