"""A send renders the template's published version: edits to the draft reach nobody until the
next publish (as Resend's templates behave), and a publish reaches the sends that follow it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from engine import contacts, content
from engine.db import transaction
from engine.errors import TransientStepFailure
from engine.json_limits import JsonLimits
from engine.mail import OutgoingEmail
from engine.mail.recording import RecordingTransport
from engine.runtime import Runtime
from engine.store import content as content_store
from models.enums import DomainStatus
from models.tables import OutboxEmail
from tests.engine.driver import Driver

MAIL = {"name": "Welcome", "alias": "welcome", "sender": "Acme <hi@acme.test>"}


def _steps() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "go"}},
        {"key": "mail", "type": "send_email", "config": {"template": {"alias": "welcome"}}},
    ]
    return steps, [{"from": "start", "to": "mail"}]


def _edit(driver: Driver, **changes: Any) -> None:
    with transaction(driver.rt.sessions) as session:
        content.update_template(session, "welcome", changes, now=driver.clock.now())


def _publish(driver: Driver) -> None:
    with transaction(driver.rt.sessions) as session:
        content.publish_template(session, "welcome", now=driver.clock.now())


def _run(driver: Driver, email: str) -> Any:
    (run_id,) = driver.send("go", email, {}).run_ids
    driver.settle()
    assert driver.steps(run_id)["mail"].status == "completed"
    return driver.sent[-1]


def test_an_edit_reaches_the_sends_after_the_next_publish(driver: Driver) -> None:
    with transaction(driver.rt.sessions) as session:
        now = driver.clock.now()
        content_store.create_domain(
            session, name="acme.test", now=now, status=DomainStatus.VERIFIED
        )
        content.create_template(
            session, {**MAIL, "subject": "Hello", "html": "<p>one</p>"}, now=now
        )
    _publish(driver)
    driver.automation(*_steps())

    _edit(driver, subject="Changed", html="<p>two</p>", text_body="two", sender="x@acme.test")
    sent = _run(driver, "a@example.test")
    assert (sent.subject, sent.html, sent.sender) == ("Hello", "<p>one</p>", MAIL["sender"])

    _publish(driver)
    sent = _run(driver, "b@example.test")
    assert (sent.subject, sent.html, sent.text) == ("Changed", "<p>two</p>", "two")
    assert sent.sender == "x@acme.test"


def test_an_edit_of_a_never_published_template_does_not_make_it_sendable(
    driver: Driver,
) -> None:
    with transaction(driver.rt.sessions) as session:
        content.create_template(session, {**MAIL, "html": "<p>one</p>"}, now=driver.clock.now())
    driver.automation(*_steps())
    _edit(driver, html="<p>two</p>")
    (run_id,) = driver.send("go", "a@example.test", {}).run_ids
    driver.settle()
    mail = driver.steps(run_id)["mail"]
    assert mail.status == "failed"
    assert mail.error == {
        "message": "Template `welcome` is not published",
        "code": "template_not_published",
    }


def test_versions_are_numbered_and_a_publish_without_changes_makes_none(driver: Driver) -> None:
    with transaction(driver.rt.sessions) as session:
        template = content.create_template(
            session, {**MAIL, "html": "<p>one</p>"}, now=driver.clock.now()
        )
        assert (template.current_version_id, template.has_unpublished_versions) == (None, True)
    _publish(driver)
    _publish(driver)
    with transaction(driver.rt.sessions) as session:
        template = content.find_template(session, "welcome")
        first = template.current_version_id
        assert first is not None and not template.has_unpublished_versions
    _edit(driver, name="Renamed")  # not content: nothing to publish
    with transaction(driver.rt.sessions) as session:
        assert not content.find_template(session, "welcome").has_unpublished_versions
    _edit(driver, html="<p>two</p>")
    _publish(driver)
    with transaction(driver.rt.sessions) as session:
        template = content.find_template(session, "welcome")
        second = template.current_version_id
        assert isinstance(second, uuid.UUID) and second != first
        versions = [content_store.get_version(session, key) for key in (first, second)]
        assert [(v.number, v.html) for v in versions if v] == [(1, "<p>one</p>"), (2, "<p>two</p>")]


def test_deleting_a_template_deletes_its_versions(driver: Driver) -> None:
    with transaction(driver.rt.sessions) as session:
        content.create_template(session, {**MAIL, "html": "<p>one</p>"}, now=driver.clock.now())
    _publish(driver)
    _edit(driver, html="<p>two</p>")
    _publish(driver)
    with transaction(driver.rt.sessions) as session:
        version_id = content.find_template(session, "welcome").current_version_id
        assert version_id is not None
        content.delete_template(session, "welcome", now=driver.clock.now())
    with transaction(driver.rt.sessions) as session:
        assert content_store.get_version(session, version_id) is None


class UnknownOutcomeOnce(RecordingTransport):
    """The first try's outcome is unknown (the connection dropped after DATA, say): the
    provider may hold the email under its idempotency key, which only takes the same body."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        super().__init__()
        self.tried: list[OutgoingEmail] = []
        self.meanwhile = meanwhile

    def send(self, email: OutgoingEmail) -> str:
        self.tried.append(email)
        if len(self.tried) == 1:
            self.meanwhile()
            raise TransientStepFailure("connection lost after DATA", code="smtp_transient")
        return super().send(email)


def test_a_retry_sends_the_message_its_first_try_rendered(driver: Driver) -> None:
    """Between the tries the template is edited and published and the contact renamed: the
    retry still sends the first try's message, byte for byte, under the same id. Rendering
    it again made a provider refuse the reused idempotency key (409) on every retry."""

    def meanwhile() -> None:
        _edit(driver, html="<p>edited {{{contact.first_name}}}</p>", reply_to="other@acme.test")
        _publish(driver)
        with transaction(driver.rt.sessions) as session:
            contacts.update_contact(
                session, "ada@example.test", {"first_name": "Bo"}, now=now, limits=JsonLimits()
            )

    transport = UnknownOutcomeOnce(meanwhile)
    rt = driver.rt
    driver = Driver(Runtime(rt.settings, sessions=rt.sessions, clock=rt.clock, transport=transport))
    with transaction(driver.rt.sessions) as session:
        now = driver.clock.now()
        content_store.create_domain(
            session, name="acme.test", now=now, status=DomainStatus.VERIFIED
        )
        template = {**MAIL, "subject": "Hi {{{contact.first_name}}}", "reply_to": "r@acme.test"}
        content.create_template(
            session, {**template, "html": "<p>{{{contact.first_name}}}</p>"}, now=now
        )
    _publish(driver)
    driver.automation(*_steps())
    with transaction(driver.rt.sessions) as session:
        contacts.create_contact(
            session, email="ada@example.test", first_name="Ada", now=now, limits=JsonLimits()
        )
    (run_id,) = driver.send("go", "ada@example.test", {}).run_ids
    driver.settle()

    assert driver.steps(run_id)["mail"].status == "completed"
    first, retry = transport.tried
    assert retry == first
    assert (retry.subject, retry.html, retry.reply_to) == ("Hi Ada", "<p>Ada</p>", ("r@acme.test",))
    with transaction(driver.rt.sessions) as session:
        (row,) = session.query(OutboxEmail).filter(OutboxEmail.run_id == run_id).all()
    # Sent: the bodies, the bulk of the row, are not kept.
    assert (row.status, row.html, row.text_body) == ("sent", None, None)
