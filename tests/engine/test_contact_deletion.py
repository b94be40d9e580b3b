"""A deleted contact's runs that wait (a delay, a wait for an event) end at once, their steps
skipped as after a contact_delete, not at their wait's end, up to 30 days later."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest

from engine.contacts import delete_contact
from engine.db import transaction
from engine.errors import StepFailure
from engine.mail import OutgoingEmail
from engine.mail.recording import RecordingTransport
from engine.runtime import Runtime
from models.tables import OutboxEmail
from tests.engine.driver import Driver


def chain(*keys: str) -> list[dict[str, str]]:
    return [{"from": a, "to": b} for a, b in itertools.pairwise(keys)]


def trigger(event: str) -> dict[str, Any]:
    return {"key": "start", "type": "trigger", "config": {"event_name": event}}


def waiting_automations(driver: Driver) -> None:
    """On user.created, one run waits 30 days for a payment, another 3 days, then each mails."""
    mail = {"key": "mail", "type": "send_email", "config": {"template": {"id": driver.template()}}}
    paid = {"event_name": "user.paid", "timeout": "30 days"}
    driver.automation(
        [trigger("user.created"), {"key": "wait", "type": "wait_for_event", "config": paid}, mail],
        [*chain("start", "wait"), {"from": "wait", "to": "mail", "type": "event_received"}],
    )
    pause = {"key": "pause", "type": "delay", "config": {"duration": "3 days"}}
    driver.automation([trigger("user.created"), pause, mail], chain("start", "pause", "mail"))


def erase_by_api(driver: Driver, email: str) -> None:
    with transaction(driver.rt.sessions) as session:
        delete_contact(session, email, now=driver.clock.now())


def erase_by_step(driver: Driver, email: str) -> None:
    driver.automation(
        [trigger("user.closed"), {"key": "erase", "type": "contact_delete"}],
        chain("start", "erase"),
    )
    driver.send("user.closed", email)


@pytest.mark.parametrize("erase", [erase_by_api, erase_by_step], ids=["api", "step"])
def test_the_runs_of_a_deleted_contact_end_now_not_when_their_wait_would(
    driver: Driver, erase: Any
) -> None:
    waiting_automations(driver)
    run_ids: list[uuid.UUID] = driver.send("user.created", "gone@example.test").run_ids
    driver.settle(until=driver.clock.now())
    assert {driver.run(run_id).status for run_id in run_ids} == {"running"}
    began = driver.clock.now()

    erase(driver, "gone@example.test")
    driver.settle(until=began)

    assert driver.clock.now() == began
    for run_id in run_ids:
        assert driver.run(run_id).status == "completed"
        steps = driver.steps(run_id)
        waited = steps.get("wait") or steps["pause"]
        assert (waited.status, waited.skip_reason) == ("skipped", "contact_deleted")
        assert (steps["mail"].status, steps["mail"].skip_reason) == ("skipped", "contact_deleted")
    assert driver.sent == []


def test_another_contact_s_runs_keep_waiting(driver: Driver) -> None:
    waiting_automations(driver)
    kept = driver.send("user.created", "kept@example.test").run_ids
    driver.send("user.created", "gone@example.test")
    driver.settle(until=driver.clock.now())

    erase_by_api(driver, "gone@example.test")
    driver.settle(until=driver.clock.now())

    assert {driver.run(run_id).status for run_id in kept} == {"running"}
    assert {step.status for run_id in kept for step in driver.steps(run_id).values()} == {
        "completed",
        "waiting",
    }


def test_a_contact_made_again_with_the_address_does_not_take_over_the_old_runs(
    driver: Driver,
) -> None:
    """The old runs keep no link to the address: the new contact's event resumes none of them,
    and its own runs start from the trigger."""
    waiting_automations(driver)
    old_runs = driver.send("user.created", "back@example.test").run_ids
    driver.settle(until=driver.clock.now())
    erase_by_api(driver, "back@example.test")

    paid = driver.send("user.paid", "back@example.test")  # before the sweeper's next tick
    assert paid.resumed == []
    assert paid.contact_id is not None
    driver.settle(until=driver.clock.now())

    for run_id in old_runs:
        run = driver.run(run_id)
        assert (run.status, run.contact_id) == ("completed", None)
    assert driver.sent == []


class RefusesFirst(RecordingTransport):
    """The first send is refused for good (an SMTP 5xx); the others go out."""

    def send(self, email: OutgoingEmail) -> str:
        if not self.refused:
            self.refused = True
            raise StepFailure("550 mailbox unavailable", code="smtp_rejected")
        return super().send(email)

    refused = False


@pytest.mark.parametrize("erase", [erase_by_api, erase_by_step], ids=["api", "step"])
def test_a_deleted_contact_s_emails_keep_no_bodies(driver: Driver, erase: Any) -> None:
    """A failed email keeps its message for a retry, which a deleted contact can no longer
    have: the deletion drops the bodies. Whom it was for, and what became of it, stay."""
    rt = driver.rt
    driver = Driver(
        Runtime(rt.settings, sessions=rt.sessions, clock=rt.clock, transport=RefusesFirst())
    )
    mail = {"key": "mail", "type": "send_email", "config": {"template": {"id": driver.template()}}}
    driver.automation([trigger("user.created"), mail], chain("start", "mail"))
    failed, sent = (driver.send("user.created", f"{name}@example.test") for name in ("a", "b"))
    driver.settle()
    assert driver.run(failed.run_ids[0]).status == "failed"
    kept = bodies(driver)
    assert kept[failed.run_ids[0]][1] is not None  # the failed one's, for a retry

    erase(driver, "a@example.test")
    driver.settle()

    after = bodies(driver)
    assert after[failed.run_ids[0]] == ("a@example.test", None, None, "failed")
    assert after[sent.run_ids[0]] == kept[sent.run_ids[0]]  # another contact's: untouched


def bodies(driver: Driver) -> dict[uuid.UUID, tuple[str, str | None, str | None, str]]:
    with transaction(driver.rt.sessions) as session:
        rows = session.query(OutboxEmail).all()
        return {row.run_id: (row.to_address, row.html, row.text_body, row.status) for row in rows}
