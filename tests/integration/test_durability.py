"""Duplicate messages, a worker killed mid-send, a wiped broker: nothing lost, nothing twice."""

from __future__ import annotations

import datetime as dt

import pytest
import redis
from sqlalchemy import update

from engine.db import transaction
from models.tables import Contact, Template
from tests.conftest import REDIS_URL
from tests.integration.factories import (
    chain,
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack
from tests.integration.markers import CELERY_BACKENDS

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def mail_then_update(stack: Stack) -> None:
    make_domain(stack)
    steps = [
        TRIGGER,
        send_email_step("mail", make_template(stack)),
        {"key": "after", "type": "contact_update", "config": {"first_name": "Mailed"}},
    ]
    make_automation(stack, steps, chain("start", "mail", "after"))


def test_step_message_delivered_twice_executes_once(rt_stack: Stack) -> None:
    mail_then_update(rt_stack)
    address = unique_email("twice")
    result = rt_stack.send("user.created", address)
    (run_id,) = result.run_ids
    rt_stack.dispatcher.dispatch(result.dispatches * 3)  # the original plus three duplicates

    assert rt_stack.wait_run(run_id).status == "completed"
    rt_stack.sweep()
    (row,) = rt_stack.outbox(run_id)
    assert row.status == "sent" and row.attempts == 1
    assert len(rt_stack.sink.to(address)) == 1
    assert rt_stack.steps(run_id)["mail"].attempt == 1


@CELERY_BACKENDS
@pytest.mark.parametrize(
    ("point", "copies_at_sink"),
    [
        # Killed after the outbox row is committed, before the SMTP conversation: exactly once.
        ("send_email.before_send", 1),
        # Killed after the SMTP server accepted, before we recorded it: SMTP cannot tell us, so
        # the message is sent again with the same Message-ID (documented at-least-once window).
        ("send_email.after_send", 2),
    ],
)
def test_worker_killed_mid_send_completes_with_one_email_recorded(
    rt_stack: Stack, point: str, copies_at_sink: int
) -> None:
    marker = rt_stack.workdir / f"killed-{point}"
    marker.unlink(missing_ok=True)
    with rt_stack.faults(f"{point}=kill@{marker}"):
        mail_then_update(rt_stack)
        address = unique_email("killed")
        (run_id,) = rt_stack.send("user.created", address).run_ids
        rt_stack.wait_for(marker.exists, what="the worker process to die at " + point)
        step = rt_stack.wait_step(run_id, "mail", "running")
        assert rt_stack.run(run_id).status == "running"

        # The redelivered message finds the step leased and does nothing; once the lease has
        # run out the sweeper hands the step to a live worker.
        rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.step_lease_seconds + 1))
        assert rt_stack.wait_run(run_id).status == "completed"

    (row,) = rt_stack.outbox(run_id)
    assert row.status == "sent"
    messages = rt_stack.sink.to(address)
    assert len(messages) == copies_at_sink
    assert {m["Message-ID"] for m in messages} == {f"<{row.id}@acme.test>"}
    step = rt_stack.steps(run_id)["mail"]
    assert step.status == "completed" and step.attempt == 2
    assert step.output["email_id"] == str(row.id)


@CELERY_BACKENDS
def test_broker_wiped_while_runs_wait_sweeper_finishes_every_run(rt_stack: Stack) -> None:
    steps = [
        TRIGGER,
        {"key": "pause", "type": "delay", "config": {"duration": "1 minute"}},
        {"key": "after", "type": "contact_update", "config": {"first_name": "Swept"}},
    ]
    make_automation(rt_stack, steps, chain("start", "pause", "after"))
    broker = redis.Redis.from_url(REDIS_URL)

    # Messages for ready steps, lost before any worker took them.
    rt_stack.stop_worker()
    queued = [rt_stack.send("user.created", unique_email("q")).run_ids[0] for _ in range(3)]
    broker.flushdb()
    rt_stack.start_worker()
    # Runs parked in their delay, whose countdown messages are lost with the broker.
    waiting = [rt_stack.send("user.created", unique_email("w")).run_ids[0] for _ in range(3)]
    for run_id in waiting:
        rt_stack.wait_step(run_id, "pause", "waiting")
    rt_stack.stop_worker()
    broker.flushdb()
    rt_stack.start_worker()

    rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.stale_after_seconds + 1))
    for run_id in queued:
        rt_stack.wait_step(run_id, "pause", "waiting")
    rt_stack.advance(dt.timedelta(minutes=1, seconds=rt_stack.settings.stale_after_seconds + 1))
    for run_id in queued + waiting:
        assert rt_stack.wait_run(run_id).status == "completed"
        assert rt_stack.steps(run_id)["after"].status == "completed"


def mail_retrying(stack: Stack, run_id: object, attempt: int) -> bool:
    step = stack.steps(run_id)["mail"]  # type: ignore[arg-type]
    return step.status == "pending" and step.attempt == attempt


def test_transient_smtp_failure_retries_with_backoff_then_sends_once(rt_stack: Stack) -> None:
    mail_then_update(rt_stack)
    address = unique_email("flaky")
    rt_stack.sink.refuse(address, "451 4.3.0 Try again later", times=1)
    (run_id,) = rt_stack.send("user.created", address).run_ids

    rt_stack.wait_for(lambda: mail_retrying(rt_stack, run_id, 1), what="the first attempt to fail")
    step = rt_stack.steps(run_id)["mail"]
    assert step.error["code"] == "smtp_unavailable"
    assert step.due_at is not None and step.due_at > rt_stack.clock.now()
    # Stamped when the first try wrote the email, kept by the next: when the step began.
    first_started = step.started_at
    assert first_started is not None and first_started == step.claimed_at
    rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.retry_base_seconds + 1))
    assert rt_stack.wait_run(run_id).status == "completed"

    (row,) = rt_stack.outbox(run_id)
    assert row.status == "sent" and row.attempts == 2
    assert len(rt_stack.sink.to(address)) == 1
    step = rt_stack.steps(run_id)["mail"]
    assert step.attempt == 2 and step.error is None
    assert step.started_at == first_started < step.claimed_at


def test_a_retry_sends_the_email_its_outbox_row_records(rt_stack: Stack) -> None:
    """Between two tries the contact's address and the template's subject change: the retry
    is the same email (one id, one Message-ID), so it goes where the row and the step's output
    say it went, with the subject recorded. It went to the new address, under the old record."""
    mail_then_update(rt_stack)
    address, moved = unique_email("before"), unique_email("moved")
    rt_stack.sink.refuse(address, "451 4.3.0 Try again later", times=1)
    (run_id,) = rt_stack.send("user.created", address).run_ids
    rt_stack.wait_for(lambda: mail_retrying(rt_stack, run_id, 1), what="the first attempt to fail")
    with transaction(rt_stack.runtime.sessions) as session:
        session.execute(update(Contact).where(Contact.email == address).values(email=moved))
        session.execute(update(Template).values(subject="Changed, {{{FIRST_NAME}}}"))
    rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.retry_base_seconds + 1))
    assert rt_stack.wait_run(run_id).status == "completed"

    (row,) = rt_stack.outbox(run_id)
    assert rt_stack.steps(run_id)["mail"].output["to"] == row.to_address == address
    assert rt_stack.sink.envelopes_for(moved) == []
    [envelope] = rt_stack.sink.envelopes_for(address)
    assert envelope.rcpt_tos == [address]
    [message] = rt_stack.sink.to(address)
    assert message["Subject"] == row.subject
    assert message["To"] == address


def test_transient_failures_give_up_after_max_attempts(rt_stack: Stack) -> None:
    mail_then_update(rt_stack)
    address = unique_email("down")
    attempts = rt_stack.settings.retry_max_attempts
    rt_stack.sink.refuse(address, "451 4.3.0 Try again later", times=attempts)
    (run_id,) = rt_stack.send("user.created", address).run_ids
    for attempt in range(1, attempts):
        rt_stack.wait_for(
            lambda a=attempt: (
                rt_stack.steps(run_id)["mail"].attempt == a
                and rt_stack.steps(run_id)["mail"].status == "pending"
            ),
            what=f"attempt {attempt} to fail",
        )
        rt_stack.advance(dt.timedelta(hours=1))

    assert rt_stack.wait_run(run_id).status == "failed"
    step = rt_stack.steps(run_id)["mail"]
    assert step.error["code"] == "smtp_unavailable"
    assert f"gave up after {attempts} attempts" in step.error["message"]
    assert rt_stack.sink.to(address) == []


def test_outbox_row_records_every_try_sent_transient_and_permanent(rt_stack: Stack) -> None:
    """Each outcome of a try leaves the outbox row so: status, attempts, error, send time and
    the provider's id (the sent mark is carried by the step's finish on PostgreSQL)."""
    mail_then_update(rt_stack)

    at_once = unique_email("at-once")
    (sent_run,) = rt_stack.send("user.created", at_once).run_ids
    assert rt_stack.wait_run(sent_run).status == "completed"
    (row,) = rt_stack.outbox(sent_run)
    mail = rt_stack.steps(sent_run)["mail"]
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert row.provider_message_id == f"<{row.id}@acme.test>"
    # Written in the transaction that ended the step, with its `now`.
    assert row.sent_at is not None and row.sent_at == mail.completed_at

    flaky = unique_email("flaky-row")
    rt_stack.sink.refuse(flaky, "451 4.3.0 Try again later", times=1)
    (retried_run,) = rt_stack.send("user.created", flaky).run_ids
    rt_stack.wait_for(lambda: mail_retrying(rt_stack, retried_run, 1), what="a failed try")
    (row,) = rt_stack.outbox(retried_run)
    assert (row.status, row.attempts, row.sent_at, row.provider_message_id) == (
        "sending",
        1,
        None,
        None,
    )
    assert row.last_error is not None and "451" in row.last_error
    assert row.last_error == rt_stack.steps(retried_run)["mail"].error["message"]
    rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.retry_base_seconds + 1))
    assert rt_stack.wait_run(retried_run).status == "completed"
    (row,) = rt_stack.outbox(retried_run)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    assert row.provider_message_id == f"<{row.id}@acme.test>"
    assert row.sent_at == rt_stack.steps(retried_run)["mail"].completed_at

    refused = unique_email("refused")
    rt_stack.sink.refuse(refused, "550 5.1.1 No such user", times=1)
    (failed_run,) = rt_stack.send("user.created", refused).run_ids
    assert rt_stack.wait_run(failed_run).status == "failed"
    (row,) = rt_stack.outbox(failed_run)
    mail = rt_stack.steps(failed_run)["mail"]
    assert (row.status, row.attempts, row.sent_at, row.provider_message_id) == (
        "failed",
        1,
        None,
        None,
    )
    assert row.last_error is not None and "550" in row.last_error
    assert row.last_error == mail.error["message"]
    assert rt_stack.sink.to(refused) == []


def test_an_email_left_unsent_by_an_unsubscribe_is_settled_not_left_sending(
    rt_stack: Stack,
) -> None:
    """A try failed (it may have reached the server: a timeout is transient too), then the
    contact unsubscribed: the retry is skipped, and the outbox row, which no try will touch
    again, says `unknown` and keeps no body, nor stays `sending` with it forever."""
    mail_then_update(rt_stack)
    address = unique_email("unsubscribed-between")
    rt_stack.sink.refuse(address, "451 4.3.0 Try again later", times=1)
    (run_id,) = rt_stack.send("user.created", address).run_ids
    rt_stack.wait_for(lambda: mail_retrying(rt_stack, run_id, 1), what="the first attempt to fail")
    with transaction(rt_stack.runtime.sessions) as session:
        session.execute(update(Contact).where(Contact.email == address).values(unsubscribed=True))
    rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.retry_base_seconds + 1))
    assert rt_stack.wait_run(run_id).status == "skipped"

    (row,) = rt_stack.outbox(run_id)
    assert (row.status, row.attempts, row.html, row.text_body) == ("unknown", 1, None, None)
    mail = rt_stack.steps(run_id)["mail"]
    assert (mail.status, mail.skip_reason) == ("skipped", "unsubscribed")
    assert mail.output["email_id"] == str(row.id)
    assert (mail.output["to"], mail.output["email_status"]) == (address, "unknown")
    assert rt_stack.sink.to(address) == []
    assert rt_stack.steps(run_id)["after"].status == "completed"
