"""Stopping or deleting an automation with more runs in flight than a statement takes parameters.

A drip campaign parks a run per contact in a long delay: an automation can have hundreds of
thousands in flight. Stopping it with `cancel_runs`, or deleting it, cancels them all in the
request's one transaction. PostgreSQL takes at most 65,535 parameters in a statement (SQLite,
32,766): listed one parameter per run, such a cancel failed, leaving every run running.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select, text, update

from bench.waiting import park
from engine.db import transaction
from engine.lifecycle import delete_automation, stop_automation
from engine.rollup_check import check_rollup
from engine.store import cancels
from engine.store.rollup_rebuild import rebuild
from models.tables import Automation, Run, RunStep
from tests.integration.harness import Stack
from tests.integration.markers import POSTGRES_ONLY
from tests.integration.test_rollup import assert_rollup_is_a_recount

# Past PostgreSQL's parameter limit (65,535), and many slices of the cancel.
IN_FLIGHT = 70_000


def parked(stack: Stack, runs: int) -> tuple[uuid.UUID, uuid.UUID]:
    """An enabled automation with `runs` runs waiting 30 days in a delay, one contact each, as
    the executor writes them (`bench.waiting.park`), and one run that is over, which a cancel
    leaves alone; the automation's id and its version's."""
    park(stack.runtime, runs + 1)
    now = stack.clock.now()
    with transaction(stack.runtime.sessions) as session:
        automation_id, version_id = session.execute(
            select(Automation.id, Automation.current_version_id)
        ).one()
        ended = session.scalar(
            select(Run.id).where(Run.automation_id == automation_id).order_by(Run.id).limit(1)
        )
        session.execute(
            update(Run).where(Run.id == ended).values(status="completed", completed_at=now)
        )
        session.execute(
            update(RunStep)
            .where(RunStep.run_id == ended, RunStep.step_key == "wait")
            .values(status="completed", completed_at=now)
        )
    assert version_id is not None
    return automation_id, version_id


# The same rows in one statement (no trigger event): 70,000 runs in a second, not 20.
_PARK_MANY = """
WITH n AS (
  SELECT g, gen_random_uuid() AS contact_id, gen_random_uuid() AS run_id
  FROM generate_series(1, :runs) AS g
), c AS (
  INSERT INTO contacts (id, email, unsubscribed, properties, created_at, updated_at)
  SELECT contact_id, 'many-' || g || '@example.test', false, '{}', :now, :now FROM n
), r AS (
  INSERT INTO runs (id, automation_id, version_id, contact_id, status, started_at, created_at)
  SELECT run_id, :aid, :vid, contact_id, 'running', :now, :now FROM n
)
INSERT INTO run_steps
  (run_id, step_key, step_type, status, attempt, created_at, started_at, completed_at,
   branch, due_at)
SELECT run_id, 'start', 'trigger', 'completed', 1, :now, :now, :now, 'default', NULL FROM n
UNION ALL
SELECT run_id, 'wait', 'delay', 'waiting', 1, :now, :now, NULL, NULL, :due FROM n
"""


def park_many(stack: Stack, runs: int) -> uuid.UUID:
    """`parked`, its many runs written by one statement."""
    automation_id, version_id = parked(stack, 0)
    now = stack.clock.now()
    values = {"runs": runs, "aid": automation_id, "vid": version_id, "now": now}
    with transaction(stack.runtime.sessions) as session:
        session.execute(text(_PARK_MANY), {**values, "due": now + dt.timedelta(days=30)})
    return automation_id


def recounted(stack: Stack) -> None:
    """The rollup of rows written without it, recounted (as a migration backfills it)."""
    with stack.runtime.sessions.kw["bind"].begin() as conn:
        rebuild(conn)


def statuses(stack: Stack, automation_id: uuid.UUID) -> tuple[Counter[str], Counter[str]]:
    """The automation's runs by status, and their steps by key and status."""
    with transaction(stack.runtime.sessions) as session:
        runs = session.execute(
            select(Run.status, func.count())
            .where(Run.automation_id == automation_id)
            .group_by(Run.status)
        ).all()
        steps = session.execute(
            select(RunStep.step_key, RunStep.status, func.count())
            .join(Run, Run.id == RunStep.run_id)
            .where(Run.automation_id == automation_id)
            .group_by(RunStep.step_key, RunStep.status)
        ).all()
    return (
        Counter({status: n for status, n in runs}),
        Counter({f"{key} {status}": n for key, status, n in steps}),
    )


def assert_cancelled(stack: Stack, automation_id: uuid.UUID, runs: int) -> None:
    assert statuses(stack, automation_id) == (
        Counter({"cancelled": runs, "completed": 1}),
        Counter({"start completed": runs + 1, "wait cancelled": runs, "wait completed": 1}),
    )


@POSTGRES_ONLY
def test_a_stop_cancels_more_runs_than_a_statement_takes_parameters(
    rt_stack: Stack, api: httpx.Client
) -> None:
    automation_id = park_many(rt_stack, IN_FLIGHT)
    recounted(rt_stack)
    answer = api.post(f"/automations/{automation_id}/stop", json={"cancel_runs": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "disabled"
    assert_cancelled(rt_stack, automation_id, IN_FLIGHT)
    assert check_rollup(rt_stack.runtime) == []


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
@pytest.mark.parametrize("action", ["stop", "delete"])
def test_runs_are_cancelled_a_slice_at_a_time_in_one_transaction(
    rt_stack: Stack, action: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancels, "SLICE", 2)
    automation_id, _ = parked(rt_stack, 7)
    recounted(rt_stack)
    now = rt_stack.clock.now()
    with transaction(rt_stack.runtime.sessions) as session:
        if action == "stop":
            stop_automation(session, automation_id, cancel_runs=True, now=now)
        else:
            delete_automation(session, automation_id, now=now)
    assert_cancelled(rt_stack, automation_id, 7)
    assert_rollup_is_a_recount(rt_stack)
