"""What a send_email step reads before it renders (its outbox row, its template, its sender
domain's status), one statement on each dialect: the sender's domain it finds in the text is
only trusted when it is the domain the address parses to, and a sent email is never sent again."""

from __future__ import annotations

from sqlalchemy import update

from engine.db import transaction
from engine.executor import execute_step
from models.enums import OutboxStatus, RunStatus, StepStatus, TemplateStatus
from models.tables import OutboxEmail, Run, RunStep, Template
from tests.integration.factories import (
    chain,
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def mail_from(stack: Stack, template: str, **config: object) -> None:
    steps = [TRIGGER, send_email_step("mail", template, **config)]
    make_automation(stack, steps, chain("start", "mail"))


def test_the_steps_sender_domain_is_checked_however_its_name_is_written(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    make_domain(rt_stack, "news.test", verified=False)
    # A quoted display name holding an @, and the domain in capitals: the domain is acme.test.
    sender = '"Acme @ Home" <hello@ACME.test>'
    mail_from(rt_stack, make_template(rt_stack, sender="News <hi@news.test>"), **{"from": sender})
    address = unique_email("sender")
    (run_id,) = rt_stack.send("user.created", address).run_ids

    assert rt_stack.wait_run(run_id).status == "completed"
    (message,) = rt_stack.sink.to(address)
    assert message["From"] == '"Acme @ Home" <hello@acme.test>'


def test_an_unverified_step_sender_fails_though_the_templates_is_verified(
    rt_stack: Stack,
) -> None:
    make_domain(rt_stack)
    make_domain(rt_stack, "news.test", verified=False)
    mail_from(rt_stack, make_template(rt_stack), **{"from": '"a@acme.test" <a@News.test>'})
    address = unique_email("unverified")
    (run_id,) = rt_stack.send("user.created", address).run_ids

    assert rt_stack.wait_run(run_id).status == "failed"
    mail = rt_stack.steps(run_id)["mail"]
    assert mail.error == {
        "message": "Sender domain `news.test` is not verified",
        "code": "domain_not_verified",
    }
    assert rt_stack.outbox(run_id) == []


def test_a_template_by_alias_and_a_missing_alias(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    make_template(rt_stack, alias="welcome")
    steps = [
        TRIGGER,
        {"key": "mail", "type": "send_email", "config": {"template": {"alias": "welcome"}}},
        {"key": "gone", "type": "send_email", "config": {"template": {"alias": "missing"}}},
    ]
    make_automation(rt_stack, steps, chain("start", "mail", "gone"))
    address = unique_email("alias")
    (run_id,) = rt_stack.send("user.created", address).run_ids

    assert rt_stack.wait_run(run_id).status == "failed"
    steps_of_run = rt_stack.steps(run_id)
    assert steps_of_run["mail"].status == "completed"
    assert steps_of_run["gone"].error == {
        "message": "Template `missing` not found",
        "code": "template_not_found",
    }
    assert len(rt_stack.sink.to(address)) == 1


def test_a_step_whose_email_is_marked_sent_completes_without_sending_again(
    rt_stack: Stack,
) -> None:
    make_domain(rt_stack)
    template = make_template(rt_stack)
    mail_from(rt_stack, template)
    address = unique_email("resent")
    (run_id,) = rt_stack.send("user.created", address).run_ids
    assert rt_stack.wait_run(run_id).status == "completed"
    (email,) = rt_stack.outbox(run_id)
    assert email.status == OutboxStatus.SENT

    # As if the worker that sent it had lost the step before recording its end, and the
    # template had been unpublished since: the step is taken up again.
    with transaction(rt_stack.runtime.sessions) as session:
        session.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.RUNNING))
        session.execute(
            update(RunStep)
            .where(RunStep.run_id == run_id, RunStep.step_key == "mail")
            .values(status=StepStatus.PENDING, due_at=None)
        )
        session.execute(update(Template).values(status=TemplateStatus.DRAFT))
    execute_step(rt_stack.runtime, run_id, "mail")

    assert rt_stack.wait_run(run_id).status == "completed"
    mail = rt_stack.steps(run_id)["mail"]
    assert mail.status == "completed" and mail.output["email_id"] == str(email.id)
    assert len(rt_stack.sink.to(address)) == 1
    (after,) = rt_stack.outbox(run_id)
    assert isinstance(after, OutboxEmail) and after.attempts == email.attempts
