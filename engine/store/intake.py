"""An ingestion's events, runs and steps written, and the waits its events may resume read.

On PostgreSQL all of it is one statement whose text never changes: the rows travel as three JSON
documents, expanded by jsonb_populate_recordset into data-modifying CTEs, and the waits are
the statement's final SELECT. Against a statement per kind of row, that saves three round trips
a transaction, and psycopg prepares the statement once per connection (a multi-row VALUES list
grows with the group, is rendered anew each time and, past 4 KB, parsed anew by psycopg too).

The final SELECT reads the waits with the statement's snapshot, taken when it starts: after the
contacts were locked by an earlier statement, so a wait_for_event step that registered before
the lock was granted is seen (the order DESIGN.md relies on). It does not see the runs this
statement creates, whose steps are pending anyway. The same statement upserts the rollup's
counts of its rows if it wrote them all and found no wait (`rollup.offer`): one statement, and
one round trip, fewer than writing them at the commit.

SQLite takes the same rows through a statement per kind.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Table
from sqlalchemy.orm import Session

from engine import json_text
from engine.store import contacts as contact_store
from engine.store import core, rollup, rollup_upserts
from engine.store import events as event_store
from engine.store import runs as run_store
from engine.store.contacts import ContactRow
from engine.store.runs import WaitingStep
from models.enums import AutomationStatus


@dataclass(frozen=True)
class Stored:
    """What was written: the keyed events stored (the others were duplicates), the waits."""

    keyed: set[uuid.UUID]
    waits: list[WaitingStep]


def store_ingested(
    session: Session,
    *,
    events: Sequence[dict[str, Any]],
    runs: Sequence[dict[str, Any]],
    steps: Sequence[dict[str, Any]],
    contact_ids: Sequence[uuid.UUID],
    event_names: Sequence[str],
    now: dt.datetime,
) -> Stored:
    """Insert the events (a keyed one is skipped if its key is taken, by a stored event or an
    earlier row), the runs of the events stored and those runs' steps; and read the contacts'
    waits for these event names, oldest first. Rows of a kind all carry the same keys."""
    if session.get_bind().dialect.name == "postgresql":
        return _in_one_statement(session, events, runs, steps, contact_ids, event_names, now)
    event_store.insert_events(session, [row for row in events if row["idempotency_key"] is None])
    keyed_rows = [row for row in events if row["idempotency_key"] is not None]
    keyed = event_store.insert_keyed_events(session, keyed_rows)
    runs, steps = _of_stored_events(events, runs, steps, keyed)
    run_store.insert_runs(session, runs)
    run_store.insert_steps(session, steps)
    waits = run_store.waits_for(session, contact_ids=contact_ids, event_names=event_names, now=now)
    return Stored(keyed, waits)


# An ingestion's first rows: the event names' listeners (kind 0) and schemas (kind 1); `{nulls}`
# are the columns of the rows that follow, NULL here.
#
# The listeners are share-locked until the commit: a stop or a delete (which locks its
# automation FOR NO KEY UPDATE, then cancels its runs) waits for this ingestion and sees its
# runs; or this waits for the stop and, reading the row again once it has committed, finds no
# listener. Read without the lock, an event could start a run after its automation's stop or
# deletion had committed, never to be cancelled. A key-share lock (what the runs' foreign keys
# take) would not wait for the stop, which leaves it to them: a stop waits for its runs' steps.
_ROUTES = f"""
SELECT 0 AS kind, trigger_event AS name, id, current_version_id AS version_id,
    NULL::jsonb AS schema{{nulls}}
FROM (
    SELECT trigger_event, id, current_version_id
    FROM automations
    WHERE trigger_event = ANY(%(names)s::text[])
        AND status = '{AutomationStatus.ENABLED.value}'
        AND deleted_at IS NULL
        AND current_version_id IS NOT NULL
    ORDER BY id
    FOR SHARE
) AS listening
UNION ALL
SELECT 1, name, NULL, NULL, schema{{nulls}}
FROM event_definitions WHERE name = ANY(%(names)s::text[])
"""  # noqa: S608 - composed of constants

# The first statement of an ingestion without idempotency keys: its event names' routes, and
# its contacts created (new emails) and locked (the others), as ensure_contacts does: inserts
# in email order first, then the locks in id order. A contact that a concurrent transaction
# created meanwhile is not in this statement's snapshot: `lock_missing` takes it after.
_CONTACT_COLUMNS = (
    ", NULL AS email, NULL AS first_name, NULL AS last_name, NULL::boolean AS unsubscribed,"
    " NULL::jsonb AS properties"
)
_ROUTES_AND_CONTACTS = f"""
WITH new AS ({contact_store.CREATE_CONTACTS}), locked AS ({contact_store.LOCK_CONTACTS})
{_ROUTES.format(nulls=_CONTACT_COLUMNS)}
UNION ALL
SELECT 2, NULL, id, NULL, NULL, email, first_name, last_name, unsubscribed, properties FROM new
UNION ALL
SELECT 2, NULL, id, NULL, NULL, email, first_name, last_name, unsubscribed, properties FROM locked
"""  # noqa: S608 - composed of constants

# The first statement of an ingestion with idempotency keys: its routes, and the events already
# stored under its keys (kind 2: the key, the event's id, its contact's id).
_ROUTES_AND_KEYS = f"""
{_ROUTES.format(nulls="")}
UNION ALL
SELECT 2, idempotency_key, id, contact_id, NULL
FROM events WHERE idempotency_key = ANY(%(keys)s::text[])
"""  # noqa: S608 - composed of constants


class StoredKey(NamedTuple):
    """An event already stored under an idempotency key."""

    idempotency_key: str
    id: uuid.UUID
    contact_id: uuid.UUID


def routes_and_keys(
    session: Session, *, names: Sequence[str], keys: Sequence[str]
) -> tuple[dict[str, event_store.EventRoute], dict[str, StoredKey]]:
    """`event_routes` of these names and the events stored under these idempotency keys, by
    key; in one round trip on PostgreSQL."""
    if session.get_bind().dialect.name != "postgresql":
        routes = event_store.event_routes(session, names)
        stored = event_store.events_by_idempotency_keys(session, keys)
        return routes, {key: StoredKey(key, row.id, row.contact_id) for key, row in stored.items()}
    params = {"names": sorted(set(names)), "keys": sorted(set(keys))}
    routes = {name: event_store.EventRoute() for name in names}
    seen: dict[str, StoredKey] = {}
    for kind, name, row_id, version_id, schema in core.driver_rows(
        session, _ROUTES_AND_KEYS, params
    ):
        if kind == 0:
            routes[name].listeners.append((row_id, version_id))
        elif kind == 1:
            routes[name].schema = schema
        else:  # the key, the event, and (in the version's column) the contact
            seen[name] = StoredKey(name, row_id, version_id)
    return routes, seen


def routes_and_contacts(
    session: Session,
    *,
    names: Sequence[str],
    emails: Sequence[str],
    ids: Sequence[uuid.UUID],
    now: dt.datetime,
) -> tuple[dict[str, event_store.EventRoute], list[ContactRow]]:
    """`event_routes` of these names and `ensure_contacts` of these (normalized) emails and
    ids, in one round trip on PostgreSQL. For an ingestion that skips no duplicate: the
    contacts of an event later refused are rolled back with it."""
    if session.get_bind().dialect.name != "postgresql":
        routes = event_store.event_routes(session, names)
        return routes, contact_store.ensure_contacts(session, emails=emails, ids=ids, now=now)
    addresses, wanted = sorted(set(emails)), sorted(set(ids))
    params = {
        "names": sorted(set(names)),
        "emails": addresses,
        "ids": wanted,
        "now": now,
    }
    routes = {name: event_store.EventRoute() for name in names}
    found: list[ContactRow] = []
    for kind, name, *row in core.driver_rows(session, _ROUTES_AND_CONTACTS, params):
        if kind == 0:
            routes[name].listeners.append((row[0], row[1]))
        elif kind == 1:
            routes[name].schema = row[2]
        else:
            found.append(ContactRow(row[0], *row[3:]))
    return routes, found + contact_store.lock_missing(session, addresses, wanted, found, now)


def _columns(rows: Sequence[dict[str, Any]], key: str) -> str:
    """The columns the rows set; with no rows, a column of the table (nothing is inserted)."""
    return ", ".join(rows[0]) if rows else key


def _statement(
    event_columns: str, run_columns: str, step_columns: str, upserts: tuple[tuple[str, str], ...]
) -> str:
    # Keyed events go in the order given (sorted by key): two transactions inserting the same
    # keys wait for each other in one order, never in a cycle. Unkeyed ones cannot conflict.
    # The rollup's upserts, if any, are read last and in their order (as rollup_upserts reads
    # its CTEs): their rows are the last the transaction locks.
    ctes = "".join(f", {name} AS ({sql})" for name, sql in upserts)
    counted = "".join(
        f"\nUNION ALL\nSELECT 2, NULL, NULL, NULL, NULL, NULL, NULL"  # noqa: S608 - our CTEs' names
        f" FROM (SELECT count(*) AS n FROM {name}) AS counted WHERE n < 0"
        for name, _ in upserts
    )
    return _TEMPLATE.format(
        event_columns=event_columns,
        run_columns=run_columns,
        step_columns=step_columns,
        upserts=ctes,
        written=counted,
    )


# Filled in by `_statement` with the column names of the rows this module builds and the
# rollup's CTEs (rollup_upserts), never with input.
_TEMPLATE = """
WITH given AS (
    SELECT * FROM jsonb_populate_recordset(NULL::events, %(events)s::jsonb) WITH ORDINALITY
), plain AS (
    INSERT INTO events ({event_columns})
    SELECT {event_columns} FROM given WHERE idempotency_key IS NULL
    RETURNING id
), keyed AS (
    INSERT INTO events ({event_columns})
    SELECT {event_columns} FROM given WHERE idempotency_key IS NOT NULL ORDER BY ordinality
    ON CONFLICT DO NOTHING
    RETURNING id
), started AS (
    INSERT INTO runs ({run_columns})
    SELECT {run_columns} FROM jsonb_populate_recordset(NULL::runs, %(runs)s::jsonb)
    WHERE event_id IN (SELECT id FROM plain UNION ALL SELECT id FROM keyed)
    RETURNING id
), created AS (
    INSERT INTO run_steps ({step_columns})
    SELECT {step_columns} FROM jsonb_populate_recordset(NULL::run_steps, %(steps)s::jsonb)
    WHERE run_id IN (SELECT id FROM started)
), waits AS (
    SELECT 1 AS kind, s.run_id, s.step_key, r.version_id, s.created_at, r.contact_id,
        s.wait_event
    FROM run_steps s JOIN runs r ON r.id = s.run_id
    WHERE r.contact_id = ANY(%(contact_ids)s::uuid[])
        AND r.status = 'running'
        AND s.status = 'waiting'
        AND s.wait_event = ANY(%(event_names)s::text[])
        AND (s.due_at IS NULL OR s.due_at > %(now)s)
){upserts}
SELECT 0 AS kind, id AS run_id, NULL AS step_key, NULL::uuid AS version_id,
    NULL::timestamptz AS created_at, NULL::uuid AS contact_id, NULL AS wait_event
FROM keyed
UNION ALL
SELECT * FROM waits{written}
ORDER BY kind, created_at, run_id, step_key
"""


# When the store statement's rollup upserts run: every keyed event was new, no wait was found.
_LAST = "(SELECT count(*) FROM keyed) = :keyed_events AND NOT EXISTS (SELECT 1 FROM waits)"
_STATEMENTS: dict[tuple[str, str, str, tuple[Table, ...]], str] = {}


def _in_one_statement(
    session: Session,
    events: Sequence[dict[str, Any]],
    runs: Sequence[dict[str, Any]],
    steps: Sequence[dict[str, Any]],
    contact_ids: Sequence[uuid.UUID],
    event_names: Sequence[str],
    now: dt.datetime,
) -> Stored:
    # The rollup's counts of these rows, upserted by the statement if it writes every row (no
    # idempotency key turns out taken) and finds no wait to resume (whose steps are then locked
    # after it, so the counts wait for the commit, to be locked last).
    offered = rollup.offer(session, runs=runs, steps=steps)
    tables = offered.tables if offered is not None else ()
    shape = (_columns(events, "id"), _columns(runs, "id"), _columns(steps, "run_id"), tables)
    sql = _STATEMENTS.get(shape)
    if sql is None:
        upserts = rollup_upserts.conditional_upserts(tables, session.get_bind().dialect, _LAST)
        sql = _STATEMENTS[shape] = _statement(*shape[:3], upserts)
    keyed_events = sum(row["idempotency_key"] is not None for row in events)
    params = {
        "events": _json(events),
        "runs": _json(runs),
        "steps": _json(steps),
        "contact_ids": sorted(set(contact_ids)),
        "event_names": sorted(set(event_names)),
        "now": now,
        "keyed_events": keyed_events,
        **(offered.params if offered is not None else {}),
    }
    keyed: set[uuid.UUID] = set()
    waits: list[WaitingStep] = []
    for kind, *row in core.driver_rows(session, sql, params):
        if kind == 0:
            keyed.add(row[0])
        else:
            run_id, step_key, version_id, created_at, contact_id, wait_event = row
            created_at = created_at.astimezone(dt.UTC)
            waits.append(
                WaitingStep(run_id, step_key, version_id, created_at, contact_id, wait_event)
            )
    if offered is not None and not waits and len(keyed) == keyed_events:
        rollup.accepted(session, offered)
        return Stored(keyed, waits)
    # The statement skipped a duplicate's run and steps itself; the rollup counts what it wrote.
    runs, steps = _of_stored_events(events, runs, steps, keyed)
    rollup.note_runs_created(session, runs)
    rollup.note_steps_created(session, steps)
    return Stored(keyed, waits)


def _of_stored_events(
    events: Sequence[dict[str, Any]],
    runs: Sequence[dict[str, Any]],
    steps: Sequence[dict[str, Any]],
    keyed: set[uuid.UUID],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The runs and steps of the events stored: every unkeyed one, the keyed ones in `keyed`."""
    stored = {row["id"] for row in events if row["idempotency_key"] is None} | keyed
    kept = [row for row in runs if row["event_id"] in stored]
    started = {row["id"] for row in kept}
    return kept, [row for row in steps if row["run_id"] in started]


def _json(rows: Sequence[dict[str, Any]]) -> str:
    # The rows of one ingestion share their timestamps (`now`): each is rendered once.
    times: dict[dt.datetime, str] = {}

    def encode(value: object) -> str:
        if isinstance(value, dt.datetime):
            text = times.get(value)
            if text is None:
                if value.tzinfo is None:
                    raise ValueError("naive datetime given to a UTC column")
                text = times[value] = value.isoformat()
            return text
        if isinstance(value, uuid.UUID):  # orjson writes them itself; the json module does not
            return str(value)
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    return json_text.dumps(rows, encode)
