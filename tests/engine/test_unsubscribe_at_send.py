"""Unsubscribing is looked at when a send_email step executes: each email of a run follows the
contact's flag at that moment, whichever way it was toggled meanwhile, and an email already
sent is recorded as sent whatever the flag says afterwards."""

from __future__ import annotations

import datetime as dt
import uuid

from engine import contacts
from engine.db import transaction
from engine.errors import TransientStepFailure
from engine.executor import execute_step
from engine.json_limits import JsonLimits
from engine.mail import OutgoingEmail
from engine.mail.recording import RecordingTransport
from engine.runtime import Runtime
from models.tables import OutboxEmail
from tests.engine.driver import Driver
from tests.engine.test_runs_in_process import TRIGGER, chain, email_step

PAUSE = {"key": "pause", "type": "delay", "config": {"duration": "1 day"}}


def set_unsubscribed(driver: Driver, email: str, value: bool) -> None:
    with transaction(driver.rt.sessions) as session:
        contacts.update_contact(
            session,
            email,
            {"unsubscribed": value},
            now=driver.clock.now(),
            limits=JsonLimits(),
        )


def test_each_email_follows_the_flag_when_it_is_sent(driver: Driver) -> None:
    template = driver.template()
    steps = [
        TRIGGER,
        email_step("first", template),
        PAUSE,
        email_step("second", template),
        {**PAUSE, "key": "later"},
        email_step("third", template),
    ]
    driver.automation(steps, chain("start", "first", "pause", "second", "later", "third"))
    (run_id,) = driver.send("user.created", "ada@example.test").run_ids
    driver.settle(until=driver.clock.now())
    assert len(driver.sent) == 1

    set_unsubscribed(driver, "ada@example.test", True)
    driver.settle(until=driver.clock.now() + dt.timedelta(days=1))
    set_unsubscribed(driver, "ada@example.test", False)  # subscribed again before the third
    driver.settle()

    steps_now = driver.steps(run_id)
    assert [steps_now[key].status for key in ("first", "second", "third")] == [
        "completed",
        "skipped",
        "completed",
    ]
    assert steps_now["second"].skip_reason == "unsubscribed"
    assert len(driver.sent) == 2
    assert driver.run(run_id).status == "skipped"


class TakenOverWhileSending(RecordingTransport):
    """The first send outlasts its claim's lease: another worker takes the step over and its
    own send fails for a moment (a retry is due), then the first send goes through."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.take_over: tuple[Runtime, uuid.UUID] | None = None

    def send(self, email: OutgoingEmail) -> str:
        self.calls += 1
        if self.calls == 1:
            assert self.take_over is not None
            rt, run_id = self.take_over
            rt.clock.advance(rt.lease + dt.timedelta(seconds=1))  # type: ignore[attr-defined]
            execute_step(rt, run_id, "hello")
        elif self.calls == 2:
            raise TransientStepFailure("421 try again later", code="smtp_transient")
        return super().send(email)


def test_an_email_sent_before_the_contact_unsubscribed_stays_sent(driver: Driver) -> None:
    transport = TakenOverWhileSending()
    rt = driver.rt
    driver = Driver(Runtime(rt.settings, sessions=rt.sessions, clock=rt.clock, transport=transport))
    template = driver.template()
    driver.automation([TRIGGER, email_step("hello", template)], chain("start", "hello"))
    (run_id,) = driver.send("user.created", "ada@example.test").run_ids
    transport.take_over = (driver.rt, run_id)
    driver.settle(until=driver.clock.now())
    # The first worker's send went out; the step waits for the second worker's retry.
    assert len(transport.sent) == 1
    retrying = driver.steps(run_id)["hello"]
    assert (retrying.status, retrying.due_at is not None) == ("pending", True)

    set_unsubscribed(driver, "ada@example.test", True)  # the link in that email, say
    driver.settle()

    hello = driver.steps(run_id)["hello"]
    with transaction(driver.rt.sessions) as session:
        (email,) = session.query(OutboxEmail).filter(OutboxEmail.run_id == run_id).all()
    assert email.status == "sent"
    assert (hello.status, hello.skip_reason) == ("completed", None)
    assert hello.output is not None and hello.output["email_id"] == str(email.id)
    assert len(transport.sent) == 1
    assert driver.run(run_id).status == "completed"
