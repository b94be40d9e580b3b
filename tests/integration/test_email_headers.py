"""What goes into an email's headers, end to end through a real worker and an SMTP server:
one recipient per contact, no line break smuggled in from a variable."""

from __future__ import annotations

import uuid

import pytest

from engine.db import transaction
from engine.ingest import ingest_event
from tests.integration.factories import (
    chain,
    make_automation,
    make_contact,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
INJECTION = "x\r\nBcc: attacker@evil.test"


def greeting(stack: Stack) -> uuid.UUID:
    """trigger -> send_email (subject from the event's `name`) -> contact_update."""
    make_domain(stack)
    template_id = make_template(stack, subject="Welcome, {{{NAME}}}!")
    email = send_email_step("welcome", template_id)
    email["config"]["template"]["variables"] = {"NAME": {"var": "event.name"}}
    steps = [
        TRIGGER,
        email,
        {"key": "after", "type": "contact_update", "config": {"first_name": "After"}},
    ]
    return make_automation(stack, steps, chain("start", "welcome", "after"))


def nothing_for_the_attacker(stack: Stack) -> bool:
    """No envelope and no header block, of any email the sink received, names evil.test."""
    return not any(
        b"evil.test" in e.raw.split(b"\r\n\r\n", 1)[0] or any("evil.test" in r for r in e.rcpt_tos)
        for e in stack.sink.envelopes
    )


def test_a_line_break_in_a_subject_variable_fails_the_step_at_once(rt_stack: Stack) -> None:
    greeting(rt_stack)
    address = unique_email("crlf")
    (run_id,) = rt_stack.send("user.created", address, {"name": INJECTION}).run_ids

    run = rt_stack.wait_run(run_id)
    assert run.status == "failed"
    steps = rt_stack.steps(run_id)
    welcome = steps["welcome"]
    assert welcome.status == "failed"
    assert welcome.error["code"] == "invalid_header_value"
    message = welcome.error["message"]
    assert "Subject" in message and "`NAME` (event.name)" in message
    assert "carriage return" in message and "Traceback" not in message
    assert welcome.attempt == 1  # failed at once: not retried, not re-sent by the sweeper
    assert "after" not in steps  # the run went no further
    assert rt_stack.outbox(run_id) == []  # checked before the outbox row is written
    assert rt_stack.sink.envelopes_for(address) == []
    assert nothing_for_the_attacker(rt_stack)


def test_a_line_break_in_the_body_is_just_text(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    template_id = make_template(rt_stack, subject="Hello", html="<p>{{{NAME}}}</p>")
    email = send_email_step("welcome", template_id)
    email["config"]["template"]["variables"] = {"NAME": {"var": "event.name"}}
    make_automation(rt_stack, [TRIGGER, email], chain("start", "welcome"))
    address = unique_email("body")
    (run_id,) = rt_stack.send("user.created", address, {"name": INJECTION}).run_ids

    assert rt_stack.wait_run(run_id).status == "completed"
    [envelope] = rt_stack.sink.envelopes_for(address)
    assert envelope.rcpt_tos == [address]
    head = envelope.raw.split(b"\r\n\r\n", 1)[0]
    assert b"evil.test" not in head


def test_one_rcpt_to_per_email(rt_stack: Stack) -> None:
    greeting(rt_stack)
    addresses = [unique_email(f"one-{n}") for n in range(3)]
    run_ids = [rt_stack.send("user.created", a, {"name": "Ann"}).run_ids[0] for a in addresses]
    for run_id in run_ids:
        assert rt_stack.wait_run(run_id).status == "completed"
    for address in addresses:
        [envelope] = rt_stack.sink.envelopes_for(address)
        assert envelope.rcpt_tos == [address]


def test_a_stored_address_list_is_never_sent_to(rt_stack: Stack) -> None:
    """A contact stored before the checks at the door, holding two addresses: the step fails,
    and neither address gets the email."""
    greeting(rt_stack)
    victim = unique_email("victim")
    contact_id = make_contact(rt_stack, f"{victim}, attacker@evil.test")
    rt = rt_stack.runtime
    with transaction(rt.sessions) as session:
        result = ingest_event(
            session,
            rt,
            event="user.created",
            contact_id=str(contact_id),
            payload={"name": "Ann"},
            now=rt.clock.now(),
        )
    rt_stack.dispatcher.dispatch(result.dispatches)
    (run_id,) = result.run_ids

    assert rt_stack.wait_run(run_id).status == "failed"
    welcome = rt_stack.steps(run_id)["welcome"]
    assert welcome.error["code"] == "invalid_address"
    assert "not a list" in welcome.error["message"]
    assert rt_stack.outbox(run_id) == []
    assert rt_stack.sink.envelopes_for(victim) == []
    assert nothing_for_the_attacker(rt_stack)


# An RFC 2047 encoded word holding a line break: no control character in the text itself, but
# the email library decodes it when the header is set, and wrote `Bcc:` on a line of its own.
# It needs no closing `?=`, and may hold spaces.
ENCODED_INJECTIONS = [
    "=?utf-8?q?x=0D=0ABcc:_attacker@evil.test?=",
    "=?utf-8?q?x=0D=0ABcc: attacker@evil.test",
]


@pytest.mark.parametrize("injection", ENCODED_INJECTIONS)
def test_an_encoded_line_break_in_a_subject_variable_fails_the_step_at_once(
    rt_stack: Stack, injection: str
) -> None:
    greeting(rt_stack)
    address = unique_email("ew")
    (run_id,) = rt_stack.send("user.created", address, {"name": injection}).run_ids

    assert rt_stack.wait_run(run_id).status == "failed"
    welcome = rt_stack.steps(run_id)["welcome"]
    assert welcome.error["code"] == "invalid_header_value"
    assert "encoded word" in welcome.error["message"]
    assert "`NAME` (event.name)" in welcome.error["message"]
    assert welcome.attempt == 1
    assert rt_stack.outbox(run_id) == []
    assert rt_stack.sink.envelopes_for(address) == []
    assert nothing_for_the_attacker(rt_stack)


def test_a_body_that_would_render_too_large_fails_the_step_before_it_is_built(
    rt_stack: Stack,
) -> None:
    """Each placeholder of a template may bring a payload's 64 KB: a 256 KB template rendered
    gigabytes in the worker's memory. The rendering stops at its bound instead."""
    make_domain(rt_stack)
    template_id = make_template(rt_stack, subject="Hello", html="<p>{{{BLOB}}}</p>" * 120)
    email = send_email_step("welcome", template_id)
    email["config"]["template"]["variables"] = {"BLOB": {"var": "event.blob"}}
    make_automation(rt_stack, [TRIGGER, email], chain("start", "welcome"))
    address = unique_email("bomb")
    (run_id,) = rt_stack.send("user.created", address, {"blob": "&" * 60_000}).run_ids

    assert rt_stack.wait_run(run_id).status == "failed"
    welcome = rt_stack.steps(run_id)["welcome"]
    assert welcome.error["code"] == "rendered_too_large"
    assert "html" in welcome.error["message"] and "5,000,000" in welcome.error["message"]
    assert welcome.attempt == 1
    assert rt_stack.outbox(run_id) == []
    assert rt_stack.sink.envelopes_for(address) == []


def test_a_stored_sender_the_email_library_cannot_read_fails_the_step_at_once(
    rt_stack: Stack,
) -> None:
    """A display name starting with a dot, stored before the door refused it: Python's address
    parser raised AttributeError in the transport, and the step was retried as an unexpected
    error. Now the step fails once, naming the From address, before the outbox."""
    make_domain(rt_stack)
    template_id = make_template(rt_stack, sender=".Acme <hello@acme.test>")
    make_automation(
        rt_stack, [TRIGGER, send_email_step("welcome", template_id)], chain("start", "welcome")
    )
    address = unique_email("dot")
    (run_id,) = rt_stack.send("user.created", address, {"plan": "pro"}).run_ids

    assert rt_stack.wait_run(run_id).status == "failed"
    welcome = rt_stack.steps(run_id)["welcome"]
    assert welcome.error["code"] == "invalid_address"
    assert "From" in welcome.error["message"] and "starts with a dot" in welcome.error["message"]
    assert welcome.attempt == 1
    assert rt_stack.outbox(run_id) == []
    assert rt_stack.sink.envelopes_for(address) == []
