"""Pages of an automation's runs filtered by several statuses: merged per-status scans give
exactly the pages one ordered scan would, both ways, on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pytest

from engine.db import transaction
from engine.store import runs as run_store
from engine.store.reports import run_page
from models.tables import Automation
from tests.integration.factories import chain, make_automation
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)

STATUSES = ["running", "completed", "failed", "skipped", "cancelled"]


def seed(stack: Stack, count: int) -> tuple[uuid.UUID, list[tuple[dt.datetime, uuid.UUID, str]]]:
    automation_id = make_automation(
        stack,
        [{"key": "start", "type": "trigger", "config": {"event_name": "paged"}}],
        chain("start"),
    )
    chosen = random.Random(7)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = []
    with transaction(stack.runtime.sessions) as session:
        automation = session.get(Automation, automation_id)
        assert automation is not None and automation.current_version_id is not None
        for n in range(count):
            # Some runs share a creation time: the id breaks the tie.
            created = start + dt.timedelta(seconds=n // 3)
            row = run_store.new_run_row(
                uuid.uuid4(), automation_id, automation.current_version_id, None, None, created
            )
            row["status"] = chosen.choice(STATUSES)
            rows.append(row)
        run_store.insert_runs(session, rows)
    return automation_id, [(r["created_at"], r["id"], r["status"]) for r in rows]


def test_walking_pages_of_several_statuses_both_ways(rt_stack: Stack) -> None:
    automation_id, runs = seed(rt_stack, 90)
    wanted = {"failed", "skipped", "cancelled"}
    expected = [ident for _, ident, status in sorted(runs, reverse=True) if status in wanted]

    def page(**cursor: uuid.UUID | None) -> tuple[list[uuid.UUID], bool]:
        with transaction(rt_stack.runtime.sessions) as session:
            found = run_page(
                session,
                automation_id,
                statuses=wanted,
                limit=7,
                after=cursor.get("after"),
                before=cursor.get("before"),
            )
        return [run.id for run in found.items], found.has_more

    forward: list[uuid.UUID] = []
    items, more = page()
    forward += items
    while more:
        items, more = page(after=forward[-1])
        forward += items
    assert forward == expected

    backward: list[uuid.UUID] = []
    items, more = page(before=expected[-1])
    backward = items + backward
    while more:
        items, more = page(before=backward[0])
        backward = items + backward
    assert backward == expected[:-1]


def test_one_status_and_no_filter(rt_stack: Stack) -> None:
    automation_id, runs = seed(rt_stack, 40)
    newest_first = [ident for _, ident, _ in sorted(runs, reverse=True)]
    with transaction(rt_stack.runtime.sessions) as session:
        every = run_page(session, automation_id, statuses=None, limit=100, after=None, before=None)
        failed = run_page(
            session, automation_id, statuses={"failed"}, limit=100, after=None, before=None
        )
    assert [run.id for run in every.items] == newest_first and not every.has_more
    assert [run.id for run in failed.items] == [
        ident for _, ident, status in sorted(runs, reverse=True) if status == "failed"
    ]
