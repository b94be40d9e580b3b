"""What a send_email step renders from its template and the run's data: the values a user puts
in placeholders, as the worker sees them."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from engine.db import transaction
from engine.store import content as content_store
from models.enums import DomainStatus, TemplateStatus
from tests.engine.driver import Driver


def _template(driver: Driver, html: str, *, text: str | None = None) -> str:
    with transaction(driver.rt.sessions) as session:
        content_store.create_domain(
            session, name="acme.test", now=driver.clock.now(), status=DomainStatus.VERIFIED
        )
        template = content_store.create_template(
            session,
            name="t",
            now=driver.clock.now(),
            status=TemplateStatus.PUBLISHED,
            subject="Hello",
            sender="Acme <hi@acme.test>",
            html=html,
            text_body=text,
        )
        return str(template.id)


def _trigger() -> dict[str, Any]:
    return {"key": "start", "type": "trigger", "config": {"event_name": "go"}}


def _mail(template_id: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {"id": template_id}
    if variables is not None:
        template["variables"] = variables
    return {"key": "mail", "type": "send_email", "config": {"template": template}}


def _one_run(driver: Driver, steps: list[dict[str, Any]], email: str) -> uuid.UUID:
    pairs = itertools.pairwise(step["key"] for step in steps)
    driver.automation(steps, [{"from": a, "to": b} for a, b in pairs])
    (run_id,) = driver.send("go", email, {}).run_ids
    driver.settle()
    return run_id


def test_a_template_reads_a_received_wait_event_the_step_does_not_name(driver: Driver) -> None:
    template_id = _template(
        driver,
        "<p>Paid {{{wait_events.order.paid.amount}}}</p>",
        text="Paid {{{wait_events.order.paid.amount}}}",
    )
    wait = {
        "key": "wait",
        "type": "wait_for_event",
        "config": {"event_name": "order.paid", "timeout": "1 day"},
    }
    driver.automation(
        [_trigger(), wait, _mail(template_id)],
        [
            {"from": "start", "to": "wait"},
            {"from": "wait", "to": "mail", "type": "event_received"},
        ],
    )
    (run_id,) = driver.send("go", "buyer@example.test", {}).run_ids
    driver.settle(until=driver.clock.now())
    driver.send("order.paid", "buyer@example.test", {"amount": 42})
    driver.settle()

    mail = driver.steps(run_id)["mail"]
    assert (mail.status, mail.error) == ("completed", None)
    (sent,) = driver.sent
    assert (sent.html, sent.text) == ("<p>Paid 42</p>", "Paid 42")


def test_a_null_field_takes_the_placeholder_s_inline_fallback(driver: Driver) -> None:
    template_id = _template(
        driver,
        "<p>Hi {{{contact.first_name|there}}}, {{{NAME|friend}}}{{{EMPTY}}}</p>",
    )
    variables = {"NAME": {"var": "contact.first_name"}, "EMPTY": {"var": "contact.last_name"}}
    run_id = _one_run(driver, [_trigger(), _mail(template_id, variables)], "nameless@example.test")

    assert driver.steps(run_id)["mail"].status == "completed"
    (sent,) = driver.sent
    assert sent.html == "<p>Hi there, friend</p>"


def test_a_missing_field_takes_the_placeholder_s_inline_fallback(driver: Driver) -> None:
    template_id = _template(driver, "<p>Hi {{{NAME|there}}}, {{{ NAME | friend }}}</p>")
    variables = {"NAME": {"var": "event.first_name"}}
    run_id = _one_run(driver, [_trigger(), _mail(template_id, variables)], "a@example.test")

    mail = driver.steps(run_id)["mail"]
    assert (mail.status, mail.error) == ("completed", None)
    assert mail.output["template"]["variables"] == {}
    (sent,) = driver.sent
    assert sent.html == "<p>Hi there, friend</p>"


def test_a_missing_field_still_fails_where_one_placeholder_has_no_fallback(
    driver: Driver,
) -> None:
    template_id = _template(driver, "<p>Hi {{{NAME|there}}}</p>", text="Hi {{{NAME}}}")
    variables = {"NAME": {"var": "event.first_name"}}
    run_id = _one_run(driver, [_trigger(), _mail(template_id, variables)], "a@example.test")

    mail = driver.steps(run_id)["mail"]
    assert mail.status == "failed"
    assert mail.error == {
        "message": "Field `event.first_name` does not exist",
        "code": "missing_field",
    }
    assert driver.sent == []


def test_a_template_without_text_sends_one_made_from_its_html(driver: Driver) -> None:
    made = _template(
        driver, '<p>Hi {{{NAME}}}</p><p><a href="{{{RESEND_UNSUBSCRIBE_URL}}}">Unsubscribe</a></p>'
    )
    run_id = _one_run(driver, [_trigger(), _mail(made, {"NAME": "<Ada & Bo>"})], "a@example.test")
    assert driver.steps(run_id)["mail"].status == "completed"
    (sent,) = driver.sent
    assert sent.html.startswith("<p>Hi &lt;Ada &amp; Bo&gt;</p>")
    assert sent.text == f"Hi <Ada & Bo>\n\nUnsubscribe ({sent.unsubscribe_url})"


def test_an_empty_text_opts_out_of_the_made_one(driver: Driver) -> None:
    template_id = _template(driver, "<p>Hi</p>", text="")
    run_id = _one_run(driver, [_trigger(), _mail(template_id)], "a@example.test")
    assert driver.steps(run_id)["mail"].status == "completed"
    (sent,) = driver.sent
    assert (sent.html, sent.text) == ("<p>Hi</p>", None)
