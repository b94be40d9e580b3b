"""The simulator agrees with a real run (worker, database, SMTP sink) for every scenario:
the same path, statuses, outputs, errors and email contents."""

from __future__ import annotations

import datetime as dt
import uuid

from engine.db import transaction
from engine.store import contacts as contact_store
from models.enums import TemplateStatus
from tests.integration.factories import (
    chain,
    make_automation,
    make_domain,
    make_template,
    send_email_step,
)
from tests.integration.harness import Stack
from tests.integration.simulation_check import Inputs, Later, run_both
from tests.integration.test_scenarios import (
    TRIGGER,
    email_automation,
    make_welcome_series,
    two_emails,
)

DAY = dt.timedelta(days=1)


def test_welcome_series_free_plan_takes_the_timeout_branch(rt_stack: Stack) -> None:
    automation_id = make_welcome_series(rt_stack)
    both = run_both(
        rt_stack, Inputs(automation_id, {"plan": "free"}, contact={"first_name": "Ann"})
    )
    steps = {s.key: s for s in both.simulation.steps}
    assert steps["await_upgrade"].output == {"event_name": "plan.upgraded", "timed_out": True}
    assert steps["mark_lapsed"].status == "completed"
    assert both.simulation.duration == dt.timedelta(days=3, weeks=1)
    (welcome,) = both.simulation.emails
    assert welcome.subject == "Welcome, Ann!"


def test_welcome_series_pro_plan_joins_the_segment(rt_stack: Stack) -> None:
    automation_id = make_welcome_series(rt_stack)
    both = run_both(rt_stack, Inputs(automation_id, {"plan": "pro"}))
    steps = {s.key: s for s in both.simulation.steps}
    assert steps["tag_pro"].status == "completed"
    assert steps["await_upgrade"].skip_reason == "branch_not_taken"


def test_welcome_series_upgrade_within_the_wait(rt_stack: Stack) -> None:
    automation_id = make_welcome_series(rt_stack)
    upgrade = Later("plan.upgraded", 4 * DAY, {"plan": "pro"})
    both = run_both(rt_stack, Inputs(automation_id, {"plan": "free"}, later=(upgrade,)))
    steps = {s.key: s for s in both.simulation.steps}
    assert steps["await_upgrade"].output is not None
    assert steps["await_upgrade"].output["payload"] == {"plan": "pro"}
    assert steps["mark_upgraded"].status == "completed"
    assert both.simulation.events[0].resumed == "await_upgrade"


def test_unsubscribed_contact_skips_emails_but_runs_other_steps(rt_stack: Stack) -> None:
    automation_id = two_emails(rt_stack)
    both = run_both(
        rt_stack,
        Inputs(
            automation_id, {"plan": "pro"}, contact={"first_name": "Gone", "unsubscribed": True}
        ),
    )
    assert both.simulation.status == "skipped"
    assert both.simulation.emails == []


def test_condition_not_met_path_and_contact_update(rt_stack: Stack) -> None:
    automation_id = two_emails(rt_stack)
    both = run_both(rt_stack, Inputs(automation_id, {}))
    assert [e.step_key for e in both.simulation.emails] == ["first"]


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
    automation_id = make_automation(rt_stack, steps, connections)
    both = run_both(rt_stack, Inputs(automation_id, {"plan": {}}))
    assert both.simulation.status == "failed"
    check = next(s for s in both.simulation.steps if s.key == "check")
    assert check.error is not None and check.error["code"] == "missing_field"


def wait_automation(
    stack: Stack, *, timeout_branch: bool, filter_rule: dict | None = None
) -> uuid.UUID:
    config: dict = {"event_name": "payment_received", "timeout": "2 days"}
    if filter_rule is not None:
        config["filter_rule"] = filter_rule
    make_domain(stack)
    template_id = make_template(
        stack, html="<p>Thanks, {{{FIRST_NAME}}}: {{{AMOUNT}}} received.</p>"
    )
    steps = [
        TRIGGER,
        {"key": "await_payment", "type": "wait_for_event", "config": config},
        with_variable(send_email_step("thank", template_id), "AMOUNT", "amount"),
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
    return make_automation(stack, steps, connections)


def with_variable(step: dict, name: str, key: str) -> dict:
    """The step with a template variable read from the awaited event's payload."""
    variables = step["config"]["template"]["variables"]
    variables[name] = {"var": f"wait_events.payment_received.{key}"}
    return step


def test_wait_without_timeout_branch_fails_with_timeout_error(rt_stack: Stack) -> None:
    automation_id = wait_automation(rt_stack, timeout_branch=False)
    both = run_both(rt_stack, Inputs(automation_id))
    wait = next(s for s in both.simulation.steps if s.key == "await_payment")
    assert wait.error == {
        "message": "Timed out after 2 days waiting for event `payment_received`",
        "code": "wait_timeout",
    }


def test_event_resumes_the_wait_and_its_payload_reaches_the_email(rt_stack: Stack) -> None:
    rule = {"field": "event.status", "operator": "eq", "value": "succeeded"}
    automation_id = wait_automation(rt_stack, timeout_branch=True, filter_rule=rule)
    later = (
        Later("payment_received", dt.timedelta(hours=1), {"status": "declined", "amount": 5}),
        Later("order.shipped", dt.timedelta(hours=2)),
        Later("payment_received", dt.timedelta(hours=3), {"status": "succeeded", "amount": 42}),
    )
    both = run_both(rt_stack, Inputs(automation_id, later=later, contact={"first_name": "Bo"}))
    assert [e.resumed for e in both.simulation.events] == [None, None, "await_payment"]
    (thanks,) = both.simulation.emails
    assert thanks.html is not None and "42 received" in thanks.html


def test_event_after_the_timeout_takes_the_timeout_branch(rt_stack: Stack) -> None:
    automation_id = wait_automation(rt_stack, timeout_branch=True)
    late = Later("payment_received", 3 * DAY, {"amount": 1})
    both = run_both(rt_stack, Inputs(automation_id, later=(late,)))
    steps = {s.key: s for s in both.simulation.steps}
    assert steps["nudge"].status == "completed" and steps["thank"].status == "skipped"
    assert both.simulation.events[0].resumed is None


def test_event_before_the_wait_begins_is_not_seen_by_it(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    template_id = make_template(rt_stack)
    steps = [
        TRIGGER,
        {"key": "pause", "type": "delay", "config": {"duration": "1 day"}},
        {
            "key": "await_payment",
            "type": "wait_for_event",
            "config": {"event_name": "payment_received", "timeout": "1 day"},
        },
        send_email_step("thank", template_id),
        {"key": "nudge", "type": "contact_update", "config": {"properties": {"paid": False}}},
    ]
    connections = [
        *chain("start", "pause", "await_payment"),
        {"from": "await_payment", "to": "thank", "type": "event_received"},
        {"from": "await_payment", "to": "nudge", "type": "timeout"},
    ]
    automation_id = make_automation(rt_stack, steps, connections)
    early = Later("payment_received", DAY / 2, {"amount": 7})
    both = run_both(rt_stack, Inputs(automation_id, later=(early,)))
    assert {s.key: s.status for s in both.simulation.steps}["nudge"] == "completed"


def test_unpublished_template_fails_the_step(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    email_automation(rt_stack, make_template(rt_stack, status=TemplateStatus.DRAFT))
    both = run_both(rt_stack, Inputs(_only_automation(rt_stack)))
    assert both.simulation.steps[-1].error is not None
    assert both.simulation.steps[-1].error["code"] == "template_not_published"


def test_unverified_sender_fails_the_step(rt_stack: Stack) -> None:
    make_domain(rt_stack, "unverified.test", verified=False)
    email_automation(rt_stack, make_template(rt_stack), **{"from": "Bob <bob@unverified.test>"})
    both = run_both(rt_stack, Inputs(_only_automation(rt_stack)))
    assert both.simulation.steps[-1].error == {
        "message": "Sender domain `unverified.test` is not verified",
        "code": "domain_not_verified",
    }


def test_missing_subject_fails_the_step(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    email_automation(rt_stack, make_template(rt_stack, subject=None))
    both = run_both(rt_stack, Inputs(_only_automation(rt_stack)))
    assert both.simulation.steps[-1].error is not None
    assert both.simulation.steps[-1].error["code"] == "missing_subject"


def test_contact_delete_skips_the_steps_after_it(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    template_id = make_template(rt_stack, alias="bye")
    steps = [
        TRIGGER,
        {
            "key": "mark",
            "type": "update_contact",
            "config": {"first_name": {"var": "event.name"}, "properties": {"left": True}},
        },
        by_alias("goodbye", send_email_step("goodbye", template_id)),
        {"key": "forget", "type": "contact_delete", "config": {}},
        {"key": "later", "type": "delay", "config": {"duration": "1 day"}},
        send_email_step("never", template_id),
    ]
    automation_id = make_automation(
        rt_stack, steps, chain("start", "mark", "goodbye", "forget", "later", "never")
    )
    both = run_both(rt_stack, Inputs(automation_id, {"name": "Eve"}))
    statuses = {s.key: (s.status, s.skip_reason) for s in both.simulation.steps}
    assert statuses["forget"] == ("completed", None)
    assert statuses["later"] == ("skipped", "contact_deleted")
    assert both.simulation.emails[0].subject == "Welcome, Eve!"
    with transaction(rt_stack.runtime.sessions) as session:
        assert contact_store.get_contact_by_email(session, both.email) is None


def by_alias(key: str, step: dict) -> dict:
    """The send_email step naming its template by alias, as a send may."""
    template = {"alias": "bye", "variables": step["config"]["template"]["variables"]}
    return {"key": key, "type": "send_email", "config": {"template": template}}


def _only_automation(stack: Stack) -> uuid.UUID:
    from engine.reports import list_automations

    with transaction(stack.runtime.sessions) as session:
        (automation,) = list_automations(
            session, status=None, limit=10, after=None, before=None
        ).items
        return automation.id
