"""Instant steps executed inline: each with its own claim, commit and log line, within the
bound; a worker killed between two of them, during one, or while publishing what follows
loses nothing and sends nothing twice."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event

from engine.clock import FrozenClock
from engine.db import transaction
from engine.dispatch import Dispatch
from engine.executor import execute_step
from engine.ingest import ingest_event
from engine.logs import StepContextFilter
from engine.runtime import Runtime, create_runtime
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
from tests.rollup_recount import recount, rollup

T0 = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)
TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def tag(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "type": "contact_update", "config": {"properties": {key: value}}}


def five_instant_steps(stack: Stack) -> uuid.UUID:
    rule = {"field": "event.plan", "operator": "exists"}
    steps = [
        TRIGGER,
        {"key": "check", "type": "condition", "config": {"rule": rule}},
        tag("a", "1"),
        tag("b", "2"),
        tag("c", "3"),
        tag("d", "4"),
    ]
    connections = [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "a", "type": "condition_met"},
        *chain("a", "b", "c", "d"),
    ]
    return make_automation(stack, steps, connections)


@pytest.fixture
def runtime(rt_stack: Stack) -> Iterator[Callable[[int], Runtime]]:
    """Runtimes in this process on the stack's database, closed after the test."""
    made: list[Runtime] = []

    def make(inline: int) -> Runtime:
        tuned = rt_stack.settings.model_copy(update={"inline_steps": inline})
        made.append(create_runtime(tuned, clock=FrozenClock(T0)))
        return made[-1]

    yield make
    for rt in made:
        rt.sessions.kw["bind"].dispose()


def first_dispatch(rt: Runtime, email: str) -> Dispatch:
    with transaction(rt.sessions) as session:
        result = ingest_event(
            session, rt, event="user.created", email=email, payload={"plan": "pro"}, now=T0
        )
    (first,) = result.dispatches
    return first


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
@pytest.mark.parametrize(("inline", "left_to_send"), [(8, None), (2, "c"), (0, "a")])
def test_instant_steps_run_inline_up_to_the_bound(
    rt_stack: Stack,
    runtime: Callable[[int], Runtime],
    caplog: pytest.LogCaptureFixture,
    inline: int,
    left_to_send: str | None,
) -> None:
    five_instant_steps(rt_stack)
    rt = runtime(inline)
    caplog.handler.addFilter(StepContextFilter())
    first = first_dispatch(rt, unique_email("inline"))
    reached: list[str] = []
    rt.checkpoint = reached.append
    with caplog.at_level(logging.INFO, logger="engine.progress"):
        following = execute_step(rt, first.run_id, first.step_key)

    assert [d.step_key for d in following] == ([left_to_send] if left_to_send else [])
    # The point a fault test kills at after inline steps is reached only when some ran.
    assert reached.count("inline.before_publish") == (1 if inline else 0)
    steps = rt_stack.steps(first.run_id)
    done = ["check", "a", "b", "c", "d"][: 1 + inline]
    for key in done:
        # Each executed step was claimed once and committed on its own.
        assert steps[key].status == "completed" and steps[key].attempt == 1, key
    logged = {r.step_key for r in caplog.records if r.getMessage().startswith("step completed")}
    assert logged == set(done)
    if left_to_send is not None:
        assert steps[left_to_send].status == "pending"
    else:
        assert rt_stack.run(first.run_id).status == "completed"


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
@pytest.mark.parametrize(("inline", "left_to_send"), [(8, None), (2, "c")])
def test_steps_claimed_apart_commit_one_claim_per_task_execution(
    rt_stack: Stack, runtime: Callable[[int], Runtime], inline: int, left_to_send: str | None
) -> None:
    """A solo worker's or the embedded executor's inline step is created claimed by the
    transaction of the step before it: its claim commits with that step's end, not alone."""
    five_instant_steps(rt_stack)
    rt = runtime(inline)
    first = first_dispatch(rt, unique_email("rides"))
    commits: list[None] = []
    db_engine = rt.sessions.kw["bind"]

    def committed(_conn: Any) -> None:
        commits.append(None)

    event.listen(db_engine, "commit", committed)
    try:
        following = execute_step(rt, first.run_id, first.step_key, claim_apart=True)
    finally:
        event.remove(db_engine, "commit", committed)

    done = ["check", "a", "b", "c", "d"][: 1 + inline]
    # The first step's claim, then each executed step's own commit.
    assert len(commits) == 1 + len(done)
    steps = rt_stack.steps(first.run_id)
    for key in done:
        assert (steps[key].status, steps[key].attempt) == ("completed", 1), key
    if left_to_send is None:
        assert following == []
        assert rt_stack.run(first.run_id).status == "completed"
    else:
        # Past the bound, the next step is created as ever: pending, for a message.
        assert following == [Dispatch(first.run_id, left_to_send, "contact_update")]
        assert (steps[left_to_send].status, steps[left_to_send].attempt) == ("pending", 0)


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
def test_a_step_followed_by_one_step_counts_itself_in_its_finish_statement(
    rt_stack: Stack, runtime: Callable[[int], Runtime]
) -> None:
    five_instant_steps(rt_stack)
    rt = runtime(8)
    first = first_dispatch(rt, unique_email("counted"))
    statements: list[str] = []
    db_engine = rt.sessions.kw["bind"]

    def record(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql)

    event.listen(db_engine, "before_cursor_execute", record)
    try:
        execute_step(rt, first.run_id, first.step_key)
    finally:
        event.remove(db_engine, "before_cursor_execute", record)

    assert rt_stack.run(first.run_id).status == "completed"
    upserts = [sql for sql in statements if "step_rollups" in sql]
    if db_engine.dialect.name == "postgresql":
        # check, a, b and c count themselves (and the step they start) as they finish; the
        # last step's transaction also ends its run, and writes the rollup before its commit.
        carried = [sql for sql in upserts if sql.lstrip().startswith("WITH finished")]
        assert (len(carried), len(upserts)) == (4, 5)
    else:
        assert len(upserts) == 5
    with transaction(rt.sessions) as session:
        assert rollup(session) == recount(session)


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
@pytest.mark.parametrize("kind", ["send_email", "delay", "wait_for_event"])
def test_a_step_that_sends_or_waits_is_never_run_inline(
    rt_stack: Stack, runtime: Callable[[int], Runtime], kind: str
) -> None:
    """A send, a delay and a wait always go through the broker (or the sweeper), whatever
    the bound: the instant step before them is the last one run inline."""
    make_domain(rt_stack)
    after_tag = {
        "send_email": send_email_step("next", make_template(rt_stack)),
        "delay": {"key": "next", "type": "delay", "config": {"duration": "1 minute"}},
        "wait_for_event": {
            "key": "next",
            "type": "wait_for_event",
            "config": {"event_name": "order.paid"},
        },
    }[kind]
    steps = [TRIGGER, tag("a", "1"), after_tag, tag("z", "9")]
    connections = chain("start", "a", "next", "z")
    if kind == "wait_for_event":
        connections[-1]["type"] = "event_received"
    make_automation(rt_stack, steps, connections)
    rt = runtime(8)
    first = first_dispatch(rt, unique_email(kind))
    following = execute_step(rt, first.run_id, first.step_key)
    assert [(d.step_key, d.step_type) for d in following] == [("next", kind)]


@CELERY_BACKENDS
@pytest.mark.parametrize(
    "point",
    [
        "inline.before_step",
        "contact_update.handler",
        "inline.before_publish",
        "dispatch.before_publish",
    ],
)
def test_a_worker_killed_around_inline_steps_loses_nothing(rt_stack: Stack, point: str) -> None:
    make_domain(rt_stack)
    # The condition arrives by message; `a` and `b` follow it inline.
    rule = {"field": "event.plan", "operator": "exists"}
    steps = [
        TRIGGER,
        {"key": "check", "type": "condition", "config": {"rule": rule}},
        tag("a", "1"),
        tag("b", "2"),
        send_email_step("mail", make_template(rt_stack)),
        tag("c", "3"),
    ]
    connections = [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "a", "type": "condition_not_met"},
        *chain("a", "b", "mail", "c"),
    ]
    make_automation(rt_stack, steps, connections)
    marker = rt_stack.workdir / f"killed-{point}"
    marker.unlink(missing_ok=True)
    with rt_stack.faults(f"{point}=kill@{marker}"):
        address = unique_email("killed")
        (run_id,) = rt_stack.send("user.created", address).run_ids
        rt_stack.wait_for(marker.exists, what=f"the worker to die at {point}")
        # The sweeper finds whatever was left ready or running, as it finds a lost message.
        rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.step_lease_seconds + 1))
        run = rt_stack.sweep_until_ended(run_id)
    assert run.status == "completed"
    assert len(rt_stack.sink.to(address)) == 1
    assert {key: s.status for key, s in rt_stack.steps(run_id).items()} == dict.fromkeys(
        ["start", "check", "a", "b", "mail", "c"], "completed"
    )
