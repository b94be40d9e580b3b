"""Unsubscribing is looked at when a send_email step executes: each email of a run follows the
contact's flag at that moment, whichever way it was toggled meanwhile, and an email already
sent is recorded as sent whatever the flag says afterwards."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from engine import contacts, sweeper
from engine.db import transaction
from engine.errors import StepFailure, TransientStepFailure
from engine.executor import execute_step
from engine.json_limits import JsonLimits
from engine.mail import OutgoingEmail
from engine.mail.recording import RecordingTransport
from engine.recovery import retry_run
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
    """The first send outlasts its claim's lease: the sweeper takes it over, another worker
    takes the step and its own send fails for a moment (a retry is due), then the first send
    goes through."""

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
            with transaction(rt.sessions) as session:  # the sweeper takes the lease over
                sweeper.sweep(session, rt, now=rt.clock.now())
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


class WorkerDies(BaseException):
    """The worker process dies: no code of it runs after this (no `except Exception` sees it)."""


class DiesAfterSending(RecordingTransport):
    """Each send in `deaths` goes out and its worker dies before recording it; `refusals` are
    refused for good (an SMTP 5xx). Sends are counted from 1."""

    def __init__(self, *, deaths: set[int], refusals: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.calls = 0
        self.deaths = deaths
        self.refusals = refusals

    def send(self, email: OutgoingEmail) -> str:
        self.calls += 1
        if self.calls in self.refusals:
            raise StepFailure("550 mailbox unavailable", code="smtp_rejected")
        sent = super().send(email)
        if self.calls in self.deaths:
            raise WorkerDies
        return sent


def with_transport(driver: Driver, transport: RecordingTransport) -> Driver:
    rt = driver.rt
    return Driver(Runtime(rt.settings, sessions=rt.sessions, clock=rt.clock, transport=transport))


def hello_automation(driver: Driver) -> uuid.UUID:
    template = driver.template()
    return driver.automation([TRIGGER, email_step("hello", template)], chain("start", "hello"))


def settle_until_the_worker_dies(driver: Driver, run_id: uuid.UUID) -> None:
    with pytest.raises(WorkerDies):
        driver.settle()
    assert driver.steps(run_id)["hello"].status == "running"
    assert len(driver.sent) == 1


def take_over_after_the_lease(driver: Driver) -> None:
    """The sweeper hands the dead worker's step to another once its lease has run out."""
    driver.clock.advance(driver.rt.lease + dt.timedelta(seconds=1))
    driver.tick()
    driver.settle()


def outbox_row(driver: Driver, run_id: uuid.UUID) -> OutboxEmail:
    with transaction(driver.rt.sessions) as session:
        (email,) = session.query(OutboxEmail).filter(OutboxEmail.run_id == run_id).all()
        return email


def assert_recorded_as_unknown(driver: Driver, run_id: uuid.UUID, reason: str) -> None:
    """Skipped, not sent again; the outbox row neither sent nor failed, its bodies dropped, and
    the step's output saying so."""
    hello = driver.steps(run_id)["hello"]
    email = outbox_row(driver, run_id)
    assert (hello.status, hello.skip_reason) == ("skipped", reason)
    assert (email.status, email.html, email.text_body) == ("unknown", None, None)
    assert hello.output is not None
    assert (hello.output["email_id"], hello.output["email_status"]) == (str(email.id), "unknown")
    assert "may have" in hello.output["email_note"]
    assert len(driver.sent) == 1


def test_an_email_that_may_have_gone_out_before_the_contact_unsubscribed_is_unknown(
    driver: Driver,
) -> None:
    driver = with_transport(driver, DiesAfterSending(deaths={1}))
    hello_automation(driver)
    (run_id,) = driver.send("user.created", "ada@example.test").run_ids
    settle_until_the_worker_dies(driver, run_id)

    set_unsubscribed(driver, "ada@example.test", True)
    take_over_after_the_lease(driver)

    assert_recorded_as_unknown(driver, run_id, "unsubscribed")
    assert driver.steps(run_id)["hello"].output["to"] == "ada@example.test"  # type: ignore[index]
    assert driver.run(run_id).status == "skipped"


def test_an_email_that_may_have_gone_out_before_the_contact_was_deleted_is_unknown(
    driver: Driver,
) -> None:
    driver = with_transport(driver, DiesAfterSending(deaths={1}))
    hello_automation(driver)
    (run_id,) = driver.send("user.created", "ada@example.test").run_ids
    settle_until_the_worker_dies(driver, run_id)

    with transaction(driver.rt.sessions) as session:
        contacts.delete_contact(session, "ada@example.test", now=driver.clock.now())
    take_over_after_the_lease(driver)

    assert_recorded_as_unknown(driver, run_id, "contact_deleted")
    # Nothing more of the deleted contact is written to the step than the email's id.
    assert set(driver.steps(run_id)["hello"].output or {}) == {
        "email_id",
        "email_status",
        "email_note",
    }


def test_a_failed_email_sent_again_by_a_retry_is_sending_until_its_outcome_is_known(
    driver: Driver,
) -> None:
    """Refused for good, then retried by an operator: that retry may send it, so the row is
    no longer `failed` once it goes to the transport, and an unsubscribe after it leaves it
    `unknown`, not `failed`."""
    driver = with_transport(driver, DiesAfterSending(deaths={2}, refusals=frozenset({1})))
    automation_id = hello_automation(driver)
    (run_id,) = driver.send("user.created", "ada@example.test").run_ids
    driver.settle()
    assert driver.run(run_id).status == "failed"
    assert outbox_row(driver, run_id).status == "failed"

    driver.enqueue(retry_run(driver.rt, automation_id, run_id).dispatches)
    settle_until_the_worker_dies(driver, run_id)
    assert outbox_row(driver, run_id).status == "sending"

    set_unsubscribed(driver, "ada@example.test", True)
    take_over_after_the_lease(driver)
    assert_recorded_as_unknown(driver, run_id, "unsubscribed")
