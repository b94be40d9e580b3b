"""A deployment's data as an older schema revision holds it, for the upgrade tests.

Every row is written with the columns the database has at that revision and no others (no
Python-side default of today's models fills a column the old schema lacks), so one dataset
seeds any revision from 0001 on: runs in every status, steps waiting, delayed, pending and
running, the outbox, keys, sessions, bulk operations.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Column, Connection, MetaData, Table, inspect, select

from models.tables import Base

T0 = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)
Row = dict[str, Any]


def _at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def _ids(count: int) -> list[uuid.UUID]:
    return [uuid.UUID(int=n + 1) for n in range(count)]


GRAPH = {
    "steps": [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {"key": "welcome", "type": "send_email", "config": {"template": {"alias": "welcome"}}},
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        {"key": "await", "type": "wait_for_event", "config": {"event_name": "plan.upgraded"}},
    ],
    "connections": [
        {"from": "start", "to": "welcome", "type": "default"},
        {"from": "welcome", "to": "pause", "type": "default"},
        {"from": "pause", "to": "await", "type": "default"},
    ],
}


def _step(run: uuid.UUID, key: str, kind: str, status: str, hours: float, **extra: Any) -> Row:
    ended = status in ("completed", "failed", "skipped", "cancelled")
    return {
        "run_id": run,
        "step_key": key,
        "step_type": kind,
        "status": status,
        "attempt": 0 if status == "pending" else 1,
        "created_at": _at(hours),
        "started_at": None if status == "pending" else _at(hours),
        "completed_at": _at(hours + 0.01) if ended else None,
        **extra,
    }


def _run(run: uuid.UUID, contact: uuid.UUID, status: str, hours: float, **extra: Any) -> Row:
    ended = status != "running"
    return {
        "id": run,
        "automation_id": AUTOMATION,
        "version_id": VERSION,
        "contact_id": contact,
        "event_id": EVENT,
        "status": status,
        "started_at": _at(hours),
        "completed_at": _at(hours + 0.5) if ended else None,
        "created_at": _at(hours),
        **extra,
    }


AUTOMATION, STOPPED, VERSION, STOPPED_VERSION, EVENT, KEY, BULK = _ids(7)
ADA, BOB, CY = (uuid.UUID(int=100 + n) for n in range(3))
SEGMENT, DOMAIN, TEMPLATE, DEFINITION = (uuid.UUID(int=200 + n) for n in range(4))
DRAFT_TEMPLATE = uuid.UUID(int=210)
DONE, FAILED, CANCELLED, SKIPPED, DELAYED, WAITING, PENDING, CLAIMED, REPLAY = (
    uuid.UUID(int=300 + n) for n in range(9)
)


def dataset() -> dict[str, list[Row]]:
    """Every table's rows, in an order that satisfies their foreign keys."""
    later = {"failed_attempts": 2, "claimed_at": _at(5), "worker_losses": 1, "lost_attempt": 1}
    return {
        "api_keys": [
            {
                "id": KEY,
                "name": "ops",
                "token_hash": "a" * 64,
                "token_prefix": "re_ops",
                "permission": "full_access",
                "created_at": T0,
                "last_used_at": _at(30),
            },
            {
                "id": uuid.UUID(int=8),
                "name": "app",
                "token_hash": "b" * 64,
                "token_prefix": "re_app",
                "permission": "sending_access",
                "created_at": T0,
                "last_used_at": None,
            },
        ],
        "contacts": [
            {
                "id": contact,
                "email": f"{name}@example.com",
                "first_name": name.title(),
                "last_name": None,
                "unsubscribed": name == "bob",
                "properties": {"plan": "pro", "seats": 3} if name == "ada" else {},
                "created_at": T0,
                "updated_at": _at(1),
            }
            for contact, name in ((ADA, "ada"), (BOB, "bob"), (CY, "cy"))
        ],
        "domains": [
            {
                "id": DOMAIN,
                "name": "example.com",
                "status": "verified",
                "region": "us-east-1",
                "created_at": T0,
                "open_tracking": False,
                "click_tracking": True,
                "tls": "enforced",
                "custom_return_path": "send",
                "tracking_subdomain": None,
            },
        ],
        "templates": [
            {
                "id": TEMPLATE,
                "name": "Welcome",
                "alias": "welcome",
                "status": "published",
                "subject": "Hi {{{FIRST_NAME}}}",
                "sender": "Team <team@example.com>",
                "reply_to": ["help@example.com"],
                "html": "<p>Hi {{{FIRST_NAME}}}</p>",
                "text_body": None,
                "variables": [{"key": "FIRST_NAME", "type": "string", "fallback_value": "there"}],
                "published_at": T0,
                "created_at": T0,
                "updated_at": T0,
            },
        ],
        "segments": [{"id": SEGMENT, "name": "Pro", "created_at": T0}],
        "segment_memberships": [{"segment_id": SEGMENT, "contact_id": ADA, "created_at": T0}],
        "event_definitions": [
            {
                "id": DEFINITION,
                "name": "user.created",
                "schema": {"plan": "string"},
                "created_at": T0,
                "updated_at": T0,
            },
        ],
        "automations": [
            {
                "id": AUTOMATION,
                "name": "Onboarding",
                "status": "enabled",
                "trigger_event": "user.created",
                "current_version_id": None,
                "deleted_at": None,
                "created_at": T0,
                "updated_at": T0,
            },
            {
                "id": STOPPED,
                "name": "Old",
                "status": "disabled",
                "trigger_event": "user.created",
                "current_version_id": None,
                "deleted_at": None,
                "created_at": T0,
                "updated_at": T0,
            },
        ],
        "automation_versions": [
            {
                "id": VERSION,
                "automation_id": AUTOMATION,
                "number": 1,
                "graph": GRAPH,
                "created_at": T0,
            },
            {
                "id": STOPPED_VERSION,
                "automation_id": STOPPED,
                "number": 1,
                "graph": GRAPH,
                "created_at": T0,
            },
        ],
        "events": [
            {
                "id": EVENT,
                "name": "user.created",
                "contact_id": ADA,
                "payload": {"plan": "pro"},
                "idempotency_key": "signup-ada",
                "received_at": T0,
            },
            {
                "id": uuid.UUID(int=9),
                "name": "plan.upgraded",
                "contact_id": None,
                "payload": {},
                "idempotency_key": None,
                "received_at": _at(2),
            },
        ],
        "runs": [
            _run(DONE, ADA, "completed", 0),
            _run(FAILED, ADA, "failed", 1, retries=2, last_retried_at=_at(3)),
            _run(CANCELLED, CY, "cancelled", 2),
            _run(SKIPPED, BOB, "skipped", 3),
            _run(DELAYED, ADA, "running", 25),
            _run(WAITING, CY, "running", 26),
            _run(PENDING, CY, "running", 49),
            _run(CLAIMED, ADA, "running", 50),
            _run(REPLAY, ADA, "completed", 51, replay_of=FAILED),
        ],
        "run_steps": [
            _step(DONE, "start", "trigger", "completed", 0, branch="default"),
            _step(
                DONE,
                "welcome",
                "send_email",
                "completed",
                0,
                output={"to": "ada@example.com", "email_id": "m1"},
            ),
            _step(FAILED, "start", "trigger", "completed", 1),
            _step(
                FAILED,
                "welcome",
                "send_email",
                "failed",
                1,
                error={"message": "SMTP 550", "code": "send_failed"},
                **later,
            ),
            _step(CANCELLED, "start", "trigger", "cancelled", 2),
            _step(SKIPPED, "welcome", "send_email", "skipped", 3, skip_reason="unsubscribed"),
            # Created skipped, as the engine writes a branch not taken: never started, and
            # counted `unreached` (migration 0008 fills that counter from such rows).
            _step(
                SKIPPED,
                "pause",
                "delay",
                "skipped",
                3,
                skip_reason="branch_not_taken",
                started_at=None,
            ),
            _step(DELAYED, "pause", "delay", "waiting", 25, due_at=_at(26), dispatched_at=_at(25)),
            _step(
                WAITING,
                "await",
                "wait_for_event",
                "waiting",
                26,
                due_at=_at(26 + 48),
                wait_event="plan.upgraded",
            ),
            _step(PENDING, "welcome", "send_email", "pending", 49, redispatch_count=3),
            _step(
                CLAIMED,
                "welcome",
                "send_email",
                "running",
                50,
                dispatched_at=_at(50),
                lease_expires_at=_at(50.1),
            ),
            _step(REPLAY, "start", "trigger", "completed", 51),
        ],
        "step_attempts": [
            {
                "run_id": FAILED,
                "step_key": "welcome",
                "number": 1,
                "status": "failed",
                "started_at": _at(1),
                "completed_at": _at(1.01),
                "error": {"message": "SMTP 451", "code": "transient"},
            },
        ],
        "outbox": [
            {
                "id": uuid.UUID(int=400),
                "run_id": DONE,
                "step_key": "welcome",
                "status": "sent",
                "to_address": "ada@example.com",
                "sender": "team@example.com",
                "subject": "Hi Ada",
                "template_id": TEMPLATE,
                "variables": {"FIRST_NAME": "Ada"},
                "provider_message_id": "m1",
                "attempts": 1,
                "last_error": None,
                "created_at": T0,
                "sent_at": T0,
            },
            {
                "id": uuid.UUID(int=401),
                "run_id": CLAIMED,
                "step_key": "welcome",
                "status": "sending",
                "to_address": "ada@example.com",
                "sender": "team@example.com",
                "subject": "Hi Ada",
                "template_id": TEMPLATE,
                "variables": {},
                "provider_message_id": None,
                "attempts": 1,
                "last_error": "timeout",
                "created_at": _at(50),
                "sent_at": None,
            },
        ],
        "bulk_operations": [
            {
                "id": BULK,
                "automation_id": AUTOMATION,
                "action": "retry",
                "status": "running",
                "filter": {"status": ["failed"]},
                "filter_hash": "c" * 64,
                "matched": 1,
                "done": 0,
                "skipped": 0,
                "failed": 0,
                "created_at": _at(52),
                "updated_at": _at(52),
                "completed_at": None,
            },
        ],
        "bulk_items": [
            {
                "bulk_id": BULK,
                "run_id": FAILED,
                "status": "pending",
                "new_run_id": None,
                "error": None,
                "completed_at": None,
                "retries": 2,
            },
        ],
        "idempotency_records": [
            {
                "scope_key": "d" * 64,
                "request_hash": "e" * 64,
                "status_code": 202,
                "response_body": b'{"object":"event"}',
                "created_at": _at(60),
                "expires_at": _at(84),
            },
        ],
        "dashboard_sessions": [
            {"id_hash": "f" * 64, "key_id": KEY, "created_at": _at(60), "expires_at": _at(72)},
        ],
    }


def tables_as_they_are(conn: Connection) -> dict[str, Table]:
    """The models' tables cut down to the columns the database has now: types, no defaults."""
    present = inspect(conn)
    cut = MetaData()
    found = {}
    for name in present.get_table_names():
        model = Base.metadata.tables.get(name)
        if model is None:
            continue
        have = {column["name"] for column in present.get_columns(name)}
        columns = [Column(c.name, c.type, primary_key=c.primary_key) for c in model.columns]
        found[name] = Table(name, cut, *(c for c in columns if c.name in have))
    return found


def seed(conn: Connection) -> None:
    """The dataset, in the tables and columns the database has at its revision."""
    tables = tables_as_they_are(conn)
    for name, rows in dataset().items():
        if name not in tables:
            continue
        table = tables[name]
        for row in rows:  # one by one: a row leaves out the columns it lets default
            conn.execute(table.insert().values({k: v for k, v in row.items() if k in table.c}))
    pointers = tables["automations"]
    for automation, version in ((AUTOMATION, VERSION), (STOPPED, STOPPED_VERSION)):
        conn.execute(
            pointers.update().where(pointers.c.id == automation).values(current_version_id=version)
        )


def snapshot(conn: Connection) -> dict[str, list[Row]]:
    """Every row of every table (but the rollups, which are derived), in primary key order."""
    found = {}
    for name, table in tables_as_they_are(conn).items():
        if name.endswith("_rollups"):
            continue
        order = list(table.primary_key.columns)
        found[name] = [dict(row._mapping) for row in conn.execute(select(table).order_by(*order))]
    return found
