"""Writes that ride on the statement recording a step's end (engine/store/core.py's Carried):
a contact's change, a segment's new member and an email's mark as sent, whether a step follows
or the run ends there.
One round trip fewer each on PostgreSQL; the same rows written on every database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from engine.clock import FrozenClock
from engine.db import transaction
from engine.dispatch import Dispatch
from engine.executor import execute_step
from engine.ingest import ingest_event
from engine.runtime import Runtime, create_runtime
from engine.store.segments import create_segment, is_member
from models.tables import Contact
from tests.integration.factories import (
    chain,
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack
from tests.integration.test_inline_steps import T0, TRIGGER, tag
from tests.rollup_recount import recount, rollup

pytestmark = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)


@pytest.fixture
def rt(rt_stack: Stack) -> Iterator[Runtime]:
    """A runtime in this process that runs every instant step inline."""
    tuned = rt_stack.settings.model_copy(update={"inline_steps": 8})
    made = create_runtime(tuned, clock=FrozenClock(T0))
    yield made
    made.transport.close()
    made.sessions.kw["bind"].dispose()


def run_through(
    rt: Runtime, email: str, named: Callable[[Dispatch], uuid.UUID | None] = lambda step: None
) -> tuple[Any, list[str]]:
    """Ingest an event for `email`, then execute the steps it makes ready, one after another,
    as workers would, each message naming the run's version `named` gives (none by default);
    the run's id and the SQL of every statement the steps ran."""
    with transaction(rt.sessions) as session:
        result = ingest_event(
            session, rt, event="user.created", email=email, payload={"plan": "pro"}, now=T0
        )
    statements: list[str] = []
    db_engine = rt.sessions.kw["bind"]

    def record(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(" ".join(sql.split()))

    pending = list(result.dispatches)
    event.listen(db_engine, "before_cursor_execute", record)
    try:
        while pending:
            step = pending.pop(0)
            pending.extend(
                execute_step(rt, step.run_id, step.step_key, step.step_type, version_id=named(step))
            )
    finally:
        event.remove(db_engine, "before_cursor_execute", record)
    return result.dispatches[0].run_id, statements


def test_a_contacts_change_rides_on_its_steps_end(rt_stack: Stack, rt: Runtime) -> None:
    """Three changes followed by a step, the fourth the run's last: each is made by the
    statement that ends its step, and the contact holds all four."""
    make_automation(
        rt_stack,
        [TRIGGER, tag("a", "1"), tag("b", "2"), tag("c", "3"), tag("d", "4")],
        chain("start", "a", "b", "c", "d"),
    )
    address = unique_email("carried")
    run_id, statements = run_through(rt, address)

    assert rt_stack.run(run_id).status == "completed"
    with transaction(rt.sessions) as session:
        contact = session.scalars(select(Contact).where(Contact.email == address)).one()
        assert contact.properties == {"a": "1", "b": "2", "c": "3", "d": "4"}
    changes = [sql for sql in statements if "UPDATE contacts" in sql]
    if rt.sessions.kw["bind"].dialect.name == "postgresql":
        assert len(changes) == 4
        assert all(sql.startswith("WITH finished") for sql in changes), changes
    with transaction(rt.sessions) as session:
        assert rollup(session) == recount(session)


def test_an_email_that_ends_its_run_is_marked_sent_by_its_steps_end(
    rt_stack: Stack, rt: Runtime
) -> None:
    make_domain(rt_stack)
    make_automation(
        rt_stack,
        [TRIGGER, send_email_step("mail", make_template(rt_stack))],
        chain("start", "mail"),
    )
    address = unique_email("sent-last")
    run_id, statements = run_through(rt, address)

    assert rt_stack.run(run_id).status == "completed"
    assert len(rt_stack.sink.to(address)) == 1
    (email,) = rt_stack.outbox(run_id)
    assert email.status == "sent" and email.attempts == 1 and email.provider_message_id
    marks = [sql for sql in statements if "UPDATE outbox" in sql]
    if rt.sessions.kw["bind"].dialect.name == "postgresql":
        (mark,) = marks
        assert mark.startswith("WITH finished"), mark


def test_a_membership_rides_on_its_steps_end_and_a_second_one_changes_nothing(
    rt_stack: Stack, rt: Runtime
) -> None:
    with transaction(rt.sessions) as session:
        first = create_segment(session, name="Trial", now=T0).id
        second = create_segment(session, name="Paid", now=T0).id

    def join(key: str, segment_id: uuid.UUID) -> dict[str, Any]:
        return {"key": key, "type": "add_to_segment", "config": {"segment_id": str(segment_id)}}

    make_automation(
        rt_stack,
        [TRIGGER, join("j1", first), tag("a", "1"), join("j2", second), join("j3", first)],
        chain("start", "j1", "a", "j2", "j3"),
    )
    address = unique_email("joined")
    run_id, statements = run_through(rt, address)

    assert rt_stack.run(run_id).status == "completed"
    assert {key: s.status for key, s in rt_stack.steps(run_id).items()} == dict.fromkeys(
        ["start", "j1", "a", "j2", "j3"], "completed"
    )
    with transaction(rt.sessions) as session:
        contact = session.scalars(select(Contact).where(Contact.email == address)).one()
        assert is_member(session, first, contact.id) and is_member(session, second, contact.id)
    joins = [sql for sql in statements if "INSERT INTO segment_memberships" in sql]
    if rt.sessions.kw["bind"].dialect.name == "postgresql":
        assert len(joins) == 3
        assert all(sql.startswith("WITH finished") for sql in joins), joins
