"""Every step type and run outcome, through a real Celery worker, on PostgreSQL and SQLite;
each scenario with instant steps run inline (the default) and with one message per step."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest

from engine.db import transaction
from engine.lifecycle import cancel_run, stop, stop_automation, update_automation
from engine.settings import Settings
from engine.store import contacts as contact_store
from engine.store import segments as segment_store
from models.enums import TemplateStatus
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

pytestmark = pytest.mark.usefixtures("messages_per_step")


@pytest.fixture(scope="module", params=["inline", "message-per-step"])
def messages_per_step(request: pytest.FixtureRequest, stack: Stack) -> Iterator[None]:
    default = Settings.model_fields["inline_steps"].default
    stack.use_inline_steps(default if request.param == "inline" else 0)
    yield
    stack.use_inline_steps(default)


TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def welcome_series(template_id: str) -> tuple[list[dict], list[dict]]:
    steps = [
        TRIGGER,
        send_email_step("welcome", template_id),
        {"key": "wait_3_days", "type": "delay", "config": {"duration": "3 days"}},
        {
            "key": "is_pro",
            "type": "condition",
            "config": {"rule": {"field": "event.plan", "operator": "eq", "value": "pro"}},
        },
        {"key": "tag_pro", "type": "add_to_segment", "config": {"segment_id": "__segment__"}},
        {
            "key": "await_upgrade",
            "type": "wait_for_event",
            "config": {"event_name": "plan.upgraded", "timeout": "1 week"},
        },
        {
            "key": "mark_upgraded",
            "type": "contact_update",
            "config": {"properties": {"upgraded": True}},
        },
        {
            "key": "mark_lapsed",
            "type": "update_contact",
            "config": {"properties": {"upgraded": False}},
        },
    ]
    connections = [
        *chain("start", "welcome", "wait_3_days", "is_pro"),
        {"from": "is_pro", "to": "tag_pro", "type": "condition_met"},
        {"from": "is_pro", "to": "await_upgrade", "type": "condition_not_met"},
        {"from": "await_upgrade", "to": "mark_upgraded", "type": "event_received"},
        {"from": "await_upgrade", "to": "mark_lapsed", "type": "timeout"},
    ]
    return steps, connections


def make_welcome_series(stack: Stack) -> uuid.UUID:
    make_domain(stack)
    template_id = make_template(stack)
    with transaction(stack.runtime.sessions) as session:
        segment = segment_store.create_segment(session, name="pro", now=stack.clock.now())
    steps, connections = welcome_series(template_id)
    steps[4]["config"]["segment_id"] = str(segment.id)
    return make_automation(stack, steps, connections)


def test_welcome_series_timeout_branch(rt_stack: Stack) -> None:
    make_welcome_series(rt_stack)
    address = unique_email("ann")
    make_contact(rt_stack, address, first_name="Ann")
    (run_id,) = rt_stack.send("user.created", address, {"plan": "free"}).run_ids

    rt_stack.wait_step(run_id, "wait_3_days", "waiting")
    (message,) = rt_stack.sink.to(address)
    assert message["Subject"] == "Welcome, Ann!"
    body = message.get_body(("html",)).get_content()
    assert "Hi Ann, your plan is free." in body
    assert "/unsubscribe/" in body
    assert message["List-Unsubscribe"].startswith("<http")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    rt_stack.advance(dt.timedelta(days=3, seconds=1))
    rt_stack.wait_step(run_id, "await_upgrade", "waiting")
    rt_stack.advance(dt.timedelta(weeks=1, seconds=1))
    run = rt_stack.wait_run(run_id)

    assert run.status == "completed"
    steps = rt_stack.steps(run_id)
    assert {k: s.status for k, s in steps.items()} == {
        "start": "completed",
        "welcome": "completed",
        "wait_3_days": "completed",
        "is_pro": "completed",
        "tag_pro": "skipped",
        "await_upgrade": "completed",
        "mark_upgraded": "skipped",
        "mark_lapsed": "completed",
    }
    assert steps["is_pro"].branch == "condition_not_met"
    assert steps["await_upgrade"].branch == "timeout"
    assert steps["tag_pro"].skip_reason == "branch_not_taken"
    welcome = steps["welcome"]
    assert welcome.output["to"] == address
    assert welcome.output["template"]["variables"] == {"FIRST_NAME": "Ann", "PLAN": "free"}
    assert welcome.started_at is not None and welcome.completed_at >= welcome.started_at
    delay = steps["wait_3_days"]
    assert delay.completed_at - delay.started_at >= dt.timedelta(days=3)


def test_welcome_series_event_received_and_condition_met(rt_stack: Stack) -> None:
    make_welcome_series(rt_stack)
    free, pro = unique_email("free"), unique_email("pro")
    (free_run,) = rt_stack.send("user.created", free, {"plan": "free"}).run_ids
    (pro_run,) = rt_stack.send("user.created", pro, {"plan": "pro"}).run_ids
    rt_stack.wait_step(free_run, "wait_3_days", "waiting")
    rt_stack.wait_step(pro_run, "wait_3_days", "waiting")
    rt_stack.advance(dt.timedelta(days=3, seconds=1))
    rt_stack.wait_step(free_run, "await_upgrade", "waiting")

    resumed = rt_stack.send("plan.upgraded", free, {"plan": "pro"}).resumed
    assert resumed == [(free_run, "await_upgrade")]
    assert rt_stack.wait_run(free_run).status == "completed"
    assert rt_stack.wait_run(pro_run).status == "completed"

    free_steps = rt_stack.steps(free_run)
    assert free_steps["await_upgrade"].branch == "event_received"
    assert free_steps["await_upgrade"].output["payload"] == {"plan": "pro"}
    assert free_steps["mark_upgraded"].status == "completed"
    assert free_steps["mark_lapsed"].status == "skipped"
    pro_steps = rt_stack.steps(pro_run)
    assert pro_steps["tag_pro"].status == "completed"
    assert pro_steps["await_upgrade"].status == "skipped"
    with transaction(rt_stack.runtime.sessions) as session:
        contact = contact_store.get_contact_by_email(session, free)
        assert contact is not None and contact.properties == {"upgraded": True}
        pro_contact = contact_store.get_contact_by_email(session, pro)
        segment_id = uuid.UUID(pro_steps["tag_pro"].output["segment_id"])
        assert pro_contact is not None
        assert segment_store.is_member(session, segment_id, pro_contact.id)


def two_emails(stack: Stack) -> uuid.UUID:
    make_domain(stack)
    template_id = make_template(stack)
    steps = [
        TRIGGER,
        send_email_step("first", template_id),
        {"key": "pause", "type": "delay", "config": {"duration": "1 day"}},
        {
            "key": "check",
            "type": "condition",
            "config": {"field": "event.plan", "operator": "exists"},
        },
        send_email_step("second", template_id),
        {"key": "touch", "type": "contact_update", "config": {"first_name": "Touched"}},
    ]
    connections = [
        *chain("start", "first", "pause", "check"),
        {"from": "check", "to": "second", "type": "condition_met"},
        {"from": "check", "to": "touch", "type": "condition_not_met"},
        *chain("second", "touch"),
    ]
    return make_automation(stack, steps, connections)


def test_unsubscribed_contact_skips_emails_but_runs_other_steps(rt_stack: Stack) -> None:
    two_emails(rt_stack)
    address = unique_email("gone")
    make_contact(rt_stack, address, first_name="Gone", unsubscribed=True)
    (run_id,) = rt_stack.send("user.created", address, {"plan": "pro"}).run_ids
    rt_stack.wait_step(run_id, "pause", "waiting")
    rt_stack.advance(dt.timedelta(days=1, seconds=1))
    run = rt_stack.wait_run(run_id)

    assert run.status == "skipped"
    steps = rt_stack.steps(run_id)
    assert steps["first"].status == steps["second"].status == "skipped"
    assert steps["first"].skip_reason == "unsubscribed"
    assert steps["pause"].status == steps["check"].status == steps["touch"].status == "completed"
    assert rt_stack.sink.to(address) == []
    with transaction(rt_stack.runtime.sessions) as session:
        contact = contact_store.get_contact_by_email(session, address)
        assert contact is not None and contact.first_name == "Touched"


def test_unsubscribe_between_two_emails(rt_stack: Stack) -> None:
    two_emails(rt_stack)
    address = unique_email("leaver")
    (run_id,) = rt_stack.send("user.created", address, {"plan": "pro"}).run_ids
    rt_stack.wait_step(run_id, "pause", "waiting")
    assert len(rt_stack.sink.to(address)) == 1
    with transaction(rt_stack.runtime.sessions) as session:
        contact = contact_store.get_contact_by_email(session, address)
        assert contact is not None
        contact_store.update_contact(session, contact, {"unsubscribed": True}, rt_stack.clock.now())
    rt_stack.advance(dt.timedelta(days=1, seconds=1))
    run = rt_stack.wait_run(run_id)

    assert run.status == "skipped"
    steps = rt_stack.steps(run_id)
    assert steps["first"].status == "completed"
    assert steps["second"].status == "skipped" and steps["second"].skip_reason == "unsubscribed"
    assert steps["touch"].status == "completed"
    assert len(rt_stack.sink.to(address)) == 1


def test_condition_on_missing_field_fails_the_run(rt_stack: Stack) -> None:
    steps = [
        TRIGGER,
        {
            "key": "check",
            "type": "condition",
            "config": {"rule": {"field": "event.plan.tier", "operator": "eq", "value": "gold"}},
        },
        {"key": "yes", "type": "contact_update", "config": {"first_name": "Gold"}},
    ]
    connections = [
        *chain("start", "check"),
        {"from": "check", "to": "yes", "type": "condition_met"},
    ]
    make_automation(rt_stack, steps, connections)
    (run_id,) = rt_stack.send("user.created", unique_email(), {"plan": {}}).run_ids
    run = rt_stack.wait_run(run_id)

    assert run.status == "failed"
    check = rt_stack.steps(run_id)["check"]
    assert check.status == "failed"
    assert check.error["code"] == "missing_field"
    assert "event.plan.tier" in check.error["message"]


def wait_automation(stack: Stack, *, timeout_branch: bool, filter_rule: dict | None = None) -> None:
    config: dict = {"event_name": "order.paid", "timeout": "2 days"}
    if filter_rule is not None:
        config["filter_rule"] = filter_rule
    steps = [
        TRIGGER,
        {"key": "await_payment", "type": "wait_for_event", "config": config},
        {"key": "thank", "type": "contact_update", "config": {"properties": {"paid": True}}},
    ]
    connections = [
        *chain("start", "await_payment"),
        {"from": "await_payment", "to": "thank", "type": "event_received"},
    ]
    if timeout_branch:
        steps.append(
            {"key": "nudge", "type": "contact_update", "config": {"properties": {"paid": False}}}
        )
        connections.append({"from": "await_payment", "to": "nudge", "type": "timeout"})
    make_automation(stack, steps, connections)


def test_wait_without_timeout_branch_fails_with_timeout_error(rt_stack: Stack) -> None:
    wait_automation(rt_stack, timeout_branch=False)
    (run_id,) = rt_stack.send("user.created", unique_email()).run_ids
    rt_stack.wait_step(run_id, "await_payment", "waiting")
    rt_stack.advance(dt.timedelta(days=2, seconds=1))
    run = rt_stack.wait_run(run_id)

    assert run.status == "failed"
    step = rt_stack.steps(run_id)["await_payment"]
    assert step.error == {
        "message": "Timed out after 2 days waiting for event `order.paid`",
        "code": "wait_timeout",
    }


def test_event_for_another_contact_or_filtered_out_resumes_nothing(rt_stack: Stack) -> None:
    rule = {"field": "event.status", "operator": "eq", "value": "succeeded"}
    wait_automation(rt_stack, timeout_branch=True, filter_rule=rule)
    mine, other = unique_email("mine"), unique_email("other")
    (run_id,) = rt_stack.send("user.created", mine).run_ids
    rt_stack.wait_step(run_id, "await_payment", "waiting")

    assert rt_stack.send("order.paid", other, {"status": "succeeded"}).resumed == []
    assert rt_stack.send("order.paid", mine, {"status": "declined"}).resumed == []
    assert rt_stack.steps(run_id)["await_payment"].status == "waiting"
    assert rt_stack.send("order.paid", mine, {"status": "succeeded"}).resumed == [
        (run_id, "await_payment")
    ]
    assert rt_stack.wait_run(run_id).status == "completed"
    assert rt_stack.steps(run_id)["thank"].status == "completed"


def email_automation(stack: Stack, template_id: str, **config: object) -> None:
    make_automation(
        stack, [TRIGGER, send_email_step("mail", template_id, **config)], chain("start", "mail")
    )


def failed_email_error(stack: Stack) -> dict:
    (run_id,) = stack.send("user.created", unique_email()).run_ids
    assert stack.wait_run(run_id).status == "failed"
    return stack.steps(run_id)["mail"].error


def test_unpublished_template_fails_the_step(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    email_automation(rt_stack, make_template(rt_stack, status=TemplateStatus.DRAFT))
    error = failed_email_error(rt_stack)
    assert error["code"] == "template_not_published"
    assert "not published" in error["message"]


def test_unverified_sender_fails_the_step(rt_stack: Stack) -> None:
    make_domain(rt_stack, "unverified.test", verified=False)
    email_automation(rt_stack, make_template(rt_stack), **{"from": "Bob <bob@unverified.test>"})
    error = failed_email_error(rt_stack)
    assert error == {
        "message": "Sender domain `unverified.test` is not verified",
        "code": "domain_not_verified",
    }


def test_missing_subject_fails_the_step(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    email_automation(rt_stack, make_template(rt_stack, subject=None))
    error = failed_email_error(rt_stack)
    assert error["code"] == "missing_subject"


def delayed_automation(stack: Stack) -> uuid.UUID:
    steps = [
        TRIGGER,
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        {"key": "after", "type": "contact_update", "config": {"first_name": "After"}},
    ]
    return make_automation(stack, steps, chain("start", "pause", "after"))


def test_stop_prevents_new_runs_and_in_flight_run_completes(rt_stack: Stack) -> None:
    automation_id = delayed_automation(rt_stack)
    (run_id,) = rt_stack.send("user.created", unique_email()).run_ids
    rt_stack.wait_step(run_id, "pause", "waiting")
    with transaction(rt_stack.runtime.sessions) as session:
        stop_automation(session, automation_id, cancel_runs=False, now=rt_stack.clock.now())

    assert rt_stack.send("user.created", unique_email()).run_ids == []
    rt_stack.advance(dt.timedelta(hours=1, seconds=1))
    assert rt_stack.wait_run(run_id).status == "completed"


def test_stop_with_cancel_cancels_runs(rt_stack: Stack) -> None:
    automation_id = delayed_automation(rt_stack)
    (run_id,) = rt_stack.send("user.created", unique_email()).run_ids
    rt_stack.wait_step(run_id, "pause", "waiting")
    stop(rt_stack.runtime, rt_stack.dispatcher, automation_id, cancel_runs=True)
    assert rt_stack.run(run_id).status == "cancelled"
    rt_stack.advance(dt.timedelta(hours=1, seconds=1))
    rt_stack.sweep()
    steps = rt_stack.steps(run_id)
    assert steps["pause"].status == "cancelled"
    assert "after" not in steps


def test_cancel_waiting_run_executes_no_later_step(rt_stack: Stack) -> None:
    automation_id = delayed_automation(rt_stack)
    (run_id,) = rt_stack.send("user.created", unique_email()).run_ids
    rt_stack.wait_step(run_id, "pause", "waiting")
    with transaction(rt_stack.runtime.sessions) as session:
        cancel_run(session, automation_id, run_id, now=rt_stack.clock.now())
    rt_stack.advance(dt.timedelta(hours=2))
    rt_stack.sweep()
    assert rt_stack.run(run_id).status == "cancelled"
    assert "after" not in rt_stack.steps(run_id)


def test_run_finishes_on_the_graph_it_started_with(rt_stack: Stack) -> None:
    automation_id = delayed_automation(rt_stack)
    (run_id,) = rt_stack.send("user.created", unique_email()).run_ids
    rt_stack.wait_step(run_id, "pause", "waiting")
    new_steps = [
        TRIGGER,
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        {"key": "renamed", "type": "contact_update", "config": {"first_name": "New"}},
    ]
    with transaction(rt_stack.runtime.sessions) as session:
        now = rt_stack.clock.now()
        update_automation(session, automation_id, {"status": "disabled"}, now=now)
        update_automation(
            session,
            automation_id,
            {
                "steps": new_steps,
                "connections": chain("start", "pause", "renamed"),
                "status": "enabled",
            },
            now=now,
        )
    (new_run,) = rt_stack.send("user.created", unique_email()).run_ids
    rt_stack.advance(dt.timedelta(hours=1, seconds=1))

    assert rt_stack.wait_run(run_id).status == "completed"
    assert set(rt_stack.steps(run_id)) == {"start", "pause", "after"}
    # Its delay starts when a worker claims it, which a loaded machine may do only after the
    # first move of the clock: an hour from then (claimed before, it is over already).
    rt_stack.wait_step(new_run, "pause", "waiting", "completed")
    rt_stack.advance(dt.timedelta(hours=1, seconds=1))
    assert rt_stack.wait_run(new_run).status == "completed"
    assert set(rt_stack.steps(new_run)) == {"start", "pause", "renamed"}
