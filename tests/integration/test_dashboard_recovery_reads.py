"""What the dashboard reads to offer recovery, on every stack: the failed runs a bulk retry or
replay would take, their error codes, a dry run of one code, and the recent bulk operations."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import func, select

from engine import bulk, content, dashboard, recovery
from engine.db import transaction
from models.enums import BulkAction, BulkStatus, TemplateStatus
from models.tables import Run
from tests.integration.factories import (
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
CHECK = {
    "key": "check",
    "type": "condition",
    "config": {"rule": {"field": "event.plan", "operator": "eq", "value": "pro"}},
}


def statuses(stack: Stack, automation_id: uuid.UUID) -> Counter[str]:
    with transaction(stack.runtime.sessions) as session:
        rows = session.execute(
            select(Run.status, func.count())
            .where(Run.automation_id == automation_id)
            .group_by(Run.status)
        )
        return Counter({status: count for status, count in rows})


def two_kinds_of_failure(stack: Stack) -> tuple[uuid.UUID, str]:
    """Three runs fail on a draft template, two on a missing field, one completes."""
    make_domain(stack)
    template_id = make_template(stack, status=TemplateStatus.DRAFT)
    steps = [TRIGGER, CHECK, send_email_step("hello", template_id)]
    connections = [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "hello", "type": "condition_met"},
    ]
    automation_id = make_automation(stack, steps, connections)
    for payload in [{"plan": "pro"}] * 3 + [{}] * 2 + [{"plan": "free"}]:
        stack.send("user.created", unique_email("reads"), payload)
    stack.wait_for(
        lambda: statuses(stack, automation_id) == Counter(failed=5, completed=1),
        timeout=60,
        what="five failed runs and one completed",
    )
    return automation_id, template_id


def test_the_offer_the_dry_run_and_the_recent_operations(rt_stack: Stack) -> None:
    automation_id, template_id = two_kinds_of_failure(rt_stack)
    sessions = rt_stack.runtime.sessions
    with transaction(sessions) as session:
        offer = dashboard.recovery_offer(session, automation_id, failed_shown=True)
        hidden = dashboard.recovery_offer(session, automation_id, failed_shown=False)
        every = dashboard.bulk_plan(session, automation_id, BulkAction.RETRY, error_code=None)
        one = dashboard.bulk_plan(
            session, automation_id, BulkAction.RETRY, error_code="missing_field"
        )
    assert (offer.retryable, offer.replayable, offer.recent) == (5, 5, [])
    assert (hidden.retryable, hidden.replayable) == (0, 0)
    assert every.matched == 5 and len(every.sample) == 5
    assert all(row.contact is not None and row.run.status == "failed" for row in every.sample)
    assert every.error_codes == [("template_not_published", 3), ("missing_field", 2)]
    assert one.matched == 2 and one.error_codes == every.error_codes
    assert statuses(rt_stack, automation_id) == Counter(failed=5, completed=1)  # dry runs

    with transaction(sessions) as session:
        content.publish_template(session, template_id, now=rt_stack.clock.now())
    wanted = dashboard.failed_runs(
        automation_id, BulkAction.RETRY, error_code="template_not_published"
    )
    with transaction(sessions) as session:
        started = bulk.start_bulk(session, wanted, now=rt_stack.clock.now())
        bulk_id = started.bulk.id
    rt_stack.dispatcher.dispatch(started.dispatches)
    rt_stack.wait_for(
        lambda: statuses(rt_stack, automation_id) == Counter(completed=4, failed=2),
        timeout=60,
        what="the retried runs to complete",
    )

    some_failed = next(run for run in every.sample if run.run.id in _failed(rt_stack))
    with transaction(sessions) as session:
        replayed = recovery.replay_run(
            session, rt_stack.runtime, automation_id, some_failed.run.id, now=rt_stack.clock.now()
        )
    rt_stack.dispatcher.dispatch(replayed.dispatches)
    # The replay runs the same version: it fails on the missing field too.
    rt_stack.wait_for(
        lambda: statuses(rt_stack, automation_id) == Counter(completed=4, failed=3),
        timeout=60,
        what="the replay to fail",
    )
    with transaction(sessions) as session:
        offer = dashboard.recovery_offer(session, automation_id, failed_shown=True)
    # Three failed runs; the replayed one is left out of both (its replay carries it on).
    assert (offer.retryable, offer.replayable) == (2, 2)
    (operation,) = offer.recent
    assert operation.id == bulk_id and operation.status == BulkStatus.COMPLETED
    assert (operation.matched, operation.done, operation.filter["error_code"]) == (
        3,
        3,
        "template_not_published",
    )


def _failed(stack: Stack) -> set[uuid.UUID]:
    with transaction(stack.runtime.sessions) as session:
        return set(session.scalars(select(Run.id).where(Run.status == "failed")))
