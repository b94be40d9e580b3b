"""Pages of an automation's runs filtered by several statuses: merged per-status scans give
exactly the pages one ordered scan would, both ways, on PostgreSQL and SQLite; the pages
PostgreSQL writes as JSON are the bytes the API would encode."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from typing import Any

import pytest
from fastapi.responses import JSONResponse
from sqlalchemy import text, update

from api import serialize_automations
from api.wire import list_body, written_list
from engine.db import transaction
from engine.store import runs as run_store
from engine.store.reports import run_page, run_page_json
from models.tables import Automation, Run
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


def test_the_items_postgresql_writes_are_the_bytes_python_encodes(rt_stack: Stack) -> None:
    """The runs list's JSON written in SQL (PostgreSQL) equals, byte for byte, the API's
    encoding of the same rows in Python, whatever the session's time zone; elsewhere the
    store answers None and the engine gives the rows."""
    automation_id, runs = seed(rt_stack, 40)
    with transaction(rt_stack.runtime.sessions) as session:
        for n, (created, ident, status) in enumerate(runs):
            if status != "running":
                # Ended: every field filled, with whole seconds (trailing zeros), a few
                # microseconds (leading zeros) and the rest; running runs keep a null.
                took = dt.timedelta(seconds=n, microseconds=(0, 7, 123456, 500000)[n % 4])
                session.execute(
                    update(Run).where(Run.id == ident).values(completed_at=created + took)
                )
    # (statuses, limit, cursor, index of the cursor run in that list, newest first)
    shapes: list[tuple[set[str] | None, int, str | None, int]] = [
        (None, 1000, None, 0),
        (None, 7, None, 0),
        (None, 7, "after", 6),
        (None, 5, "before", 20),
        ({"failed", "skipped", "running"}, 4, None, 0),
        ({"failed", "completed"}, 3, "before", -1),
        ({"completed"}, 100, None, 0),
        ({"cancelled", "failed"}, 1000, "after", 0),
    ]
    postgres = rt_stack.backend == "postgres"
    with transaction(rt_stack.runtime.sessions) as session:
        if postgres:
            session.execute(text("SET LOCAL TimeZone = 'America/St_Johns'"))
        for shape in shapes:
            statuses, limit, cursor, at = shape
            listed = [
                ident
                for _, ident, status in sorted(runs, reverse=True)
                if statuses is None or status in statuses
            ]
            query: dict[str, Any] = {
                "statuses": statuses,
                "limit": limit,
                "after": None,
                "before": None,
            }
            if cursor is not None:
                query[cursor] = listed[at]
            rows = run_page(session, automation_id, **query)
            items = [serialize_automations.run_item(run) for run in rows.items]
            encoded = JSONResponse(list_body(items, rows.has_more)).body
            written = run_page_json(session, automation_id, **query)
            if not postgres:
                assert written is None
                continue
            assert written is not None
            assert written_list(written.items, written.has_more).body == encoded, shape
            assert json.loads(bytes(encoded))["data"], shape  # no shape is an empty page
