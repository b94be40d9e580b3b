"""Events received."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.orm import Session

from engine.store.core import EVENTS, execute
from engine.store.dialect import insert_or_ignore
from models.tables import Event

_INSERT = insert(EVENTS)
_BY_KEYS = select(EVENTS.c.idempotency_key, EVENTS.c.id, EVENTS.c.contact_id).where(
    EVENTS.c.idempotency_key.in_(bindparam("keys", expanding=True))
)


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Store events without idempotency keys, in one round trip; every row has the same keys."""
    if rows:
        execute(session, _INSERT, list(rows))


def insert_keyed_events(session: Session, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Store events with idempotency keys in one statement; the ids of those stored (an event
    whose key is already taken, by a stored event or an earlier row, is skipped)."""
    if not rows:
        return set()
    # One order of unique-key inserts for every transaction: two batches cannot wait in a cycle.
    ordered = sorted(rows, key=lambda row: str(row["idempotency_key"]))
    inserted = execute(session, insert_or_ignore(session, EVENTS, "id"), ordered)
    return {row.id for row in inserted}


def events_by_idempotency_keys(session: Session, keys: Sequence[str]) -> dict[str, Row[Any]]:
    """The events already stored under these idempotency keys (id and contact_id), by key."""
    if not keys:
        return {}
    return {row.idempotency_key: row for row in execute(session, _BY_KEYS, {"keys": list(keys)})}


def events_since(
    session: Session, *, contact_id: uuid.UUID, name: str, since: dt.datetime
) -> Sequence[Event]:
    """Events of this name for this contact received at or after `since`, oldest first."""
    return session.scalars(
        select(Event)
        .where(Event.contact_id == contact_id, Event.name == name, Event.received_at >= since)
        .order_by(Event.received_at, Event.id)
    ).all()
