"""Synthetic history for the dashboard benchmark: automations, 100,000 runs, steps, emails.

Rows are written in bulk through SQLAlchemy Core, in the shapes the executor writes them: runs
spread over the last 30 days, mostly finished, some failed, skipped, cancelled or still waiting.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

from sqlalchemy import Engine, insert, text, update

from bench.procs import fresh_schema
from engine.db import create_db_engine
from engine.graph import validate_graph
from models.tables import Automation, AutomationVersion, Contact, Event, OutboxEmail, Run, RunStep

# (name, share of the runs): one busy automation and a few quieter ones.
AUTOMATIONS = [("Onboarding", 0.6), ("Win-back", 0.25), ("Receipts", 0.1), ("Survey", 0.05)]
# Run outcomes and how often they happen.
OUTCOMES = [("completed", 85), ("failed", 5), ("skipped", 4), ("running", 4), ("cancelled", 2)]
GRAPH_STEPS = [
    {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
    {
        "key": "check",
        "type": "condition",
        "config": {"rule": {"field": "event.kind", "operator": "eq", "value": "wait"}},
    },
    {"key": "pause", "type": "delay", "config": {"duration": "3 days"}},
    {"key": "after", "type": "contact_update", "config": {"first_name": "After"}},
    {"key": "welcome", "type": "send_email", "config": {"template": {"id": str(uuid.uuid4())}}},
]
GRAPH_CONNECTIONS = [
    {"from": "start", "to": "check"},
    {"from": "check", "to": "pause", "type": "condition_met"},
    {"from": "check", "to": "welcome", "type": "condition_not_met"},
    {"from": "pause", "to": "after"},
]


def _step(run: dict[str, Any], key: str, kind: str, status: str, **extra: Any) -> dict[str, Any]:
    at = run["created_at"]
    row = {
        "run_id": run["id"],
        "step_key": key,
        "step_type": kind,
        "status": status,
        "skip_reason": None,
        "branch": None,
        "attempt": 1,
        "started_at": at,
        "completed_at": at + dt.timedelta(milliseconds=40) if status != "waiting" else None,
        "created_at": at,
        "due_at": None,
        "output": None,
        "error": None,
    }
    row.update(extra)
    return row


def steps_of(run: dict[str, Any], outcome: str) -> list[dict[str, Any]]:
    """The step rows a run with this outcome would have written."""
    rows = [_step(run, "start", "trigger", "completed", branch="default")]
    if outcome == "failed":
        error = {"message": "Field `event.kind` does not exist", "code": "missing_field"}
        return [*rows, _step(run, "check", "condition", "failed", error=error)]
    waits = outcome in ("running", "cancelled") or random.random() < 0.3
    rows.append(_step(run, "check", "condition", "completed", output={"result": waits}))
    skip = {"skip_reason": "branch_not_taken", "started_at": None, "completed_at": None}
    if waits:
        status = {"running": "waiting", "cancelled": "cancelled"}.get(outcome, "completed")
        due = run["created_at"] + dt.timedelta(days=3)
        rows += [
            _step(run, "pause", "delay", status, due_at=due),
            _step(run, "welcome", "send_email", "skipped", **skip),
        ]
        if outcome == "completed":
            rows.append(_step(run, "after", "contact_update", "completed"))
        return rows
    mail = "skipped" if outcome == "skipped" else "completed"
    reason = {"skip_reason": "unsubscribed"} if outcome == "skipped" else {}
    return [
        *rows,
        _step(run, "pause", "delay", "skipped", **skip),
        _step(run, "after", "contact_update", "skipped", **skip),
        _step(run, "welcome", "send_email", mail, **reason),
    ]


def synthetic_run(
    automation: tuple[uuid.UUID, uuid.UUID],
    contact: dict[str, Any],
    created: dt.datetime,
    now: dt.datetime,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """A run created at `created`: its row, its event, its step rows and its email."""
    outcome = random.choice([name for name, weight in OUTCOMES for _ in range(weight)])
    if outcome == "running" and now - created > dt.timedelta(days=3):
        outcome = "completed"  # its 3-day delay is over
    took = dt.timedelta(seconds=random.expovariate(1 / 90))
    event = {
        "id": uuid.uuid4(),
        "name": "user.created",
        "received_at": created,
        "contact_id": contact["id"],
        "payload": {"plan": "pro"},
    }
    run = {
        "id": uuid.uuid4(),
        "automation_id": automation[0],
        "version_id": automation[1],
        "contact_id": contact["id"],
        "event_id": event["id"],
        "status": outcome,
        "started_at": created,
        "created_at": created,
        "completed_at": None if outcome == "running" else created + took,
    }
    steps = steps_of(run, outcome)
    sent = any(r["step_key"] == "welcome" and r["status"] == "completed" for r in steps)
    mail = {
        "id": uuid.uuid4(),
        "run_id": run["id"],
        "step_key": "welcome",
        "status": "sent",
        "to_address": contact["email"],
        "sender": "hello@bench.test",
        "subject": "Welcome",
        "variables": {},
        "attempts": 1,
        "created_at": created,
        "sent_at": created,
    }
    return run, event, steps, [mail] if sent else []


def fill(database_url: str, total: int, now: dt.datetime) -> dict[str, Any]:
    """An empty schema, then automations with `total` runs; returns ids the pages are timed on."""
    db_engine = create_db_engine(database_url)
    fresh_schema(db_engine)
    sample = insert_history(db_engine, total, now, contacts=10_000)
    if db_engine.dialect.name == "postgresql":
        with db_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    db_engine.dispose()
    return sample


def _automation(db_engine: Engine, name: str, now: dt.datetime) -> tuple[uuid.UUID, uuid.UUID]:
    """An enabled automation of GRAPH_STEPS, its id and its version's, written with the columns
    of the first schema only: the migration tests write history into a database of revision
    0004, before any column was added to these tables."""
    graph = validate_graph(GRAPH_STEPS, GRAPH_CONNECTIONS)
    automation_id, version_id = uuid.uuid4(), uuid.uuid4()
    with db_engine.begin() as conn:
        conn.execute(
            insert(Automation).values(
                id=automation_id,
                name=name,
                status="enabled",
                trigger_event=graph.event_name,
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            insert(AutomationVersion).values(
                id=version_id,
                automation_id=automation_id,
                number=1,
                graph=graph.to_dict(),
                created_at=now,
            )
        )
        conn.execute(
            update(Automation)
            .where(Automation.id == automation_id)
            .values(current_version_id=version_id)
        )
    return automation_id, version_id


def insert_history(
    db_engine: Engine, total: int, now: dt.datetime, *, contacts: int
) -> dict[str, Any]:
    """Automations with `total` runs over the last 30 days, in an existing schema."""
    random.seed(7)
    automations = [
        _automation(db_engine, name, now - dt.timedelta(days=31)) for name, _ in AUTOMATIONS
    ]
    people = [
        {
            "id": uuid.uuid4(),
            "email": f"c{i}@bench.test",
            "first_name": f"Contact {i}",
            "unsubscribed": False,
            "properties": {},
            "created_at": now,
            "updated_at": now,
        }
        for i in range(contacts)
    ]
    sample: dict[str, Any] = {"busiest": automations[0][0]}
    with db_engine.begin() as conn:
        conn.execute(insert(Contact), people)
        # Runs are created over time, so rows land in the heap roughly in time order.
        starts = sorted(
            (now - dt.timedelta(seconds=random.uniform(0, 30 * 86400)), automation)
            for automation, (_, share) in zip(automations, AUTOMATIONS, strict=True)
            for _ in range(int(total * share))
        )
        for first in range(0, len(starts), 5000):
            made = [
                synthetic_run(automation, random.choice(people), created, now)
                for created, automation in starts[first : first + 5000]
            ]
            conn.execute(insert(Event), [event for _, event, _, _ in made])
            conn.execute(insert(Run), [run for run, _, _, _ in made])
            conn.execute(insert(RunStep), [row for _, _, rows, _ in made for row in rows])
            mails = [mail for _, _, _, sent in made for mail in sent]
            if mails:
                conn.execute(insert(OutboxEmail), mails)
            for run, _, _, _ in made:
                if run["status"] == "failed" and run["automation_id"] == sample["busiest"]:
                    sample.setdefault("failed_run", (run["automation_id"], run["id"]))
    return sample
