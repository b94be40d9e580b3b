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


def insert_event(
    session: Session,
    *,
    name: str,
    contact_id: uuid.UUID,
    payload: dict[str, Any],
    idempotency_key: str | None,
    now: dt.datetime,
) -> uuid.UUID | None:
    """Store the event; None when an event with this idempotency key was already stored."""
    event_id = uuid.uuid4()
    row = {
        "id": event_id,
        "name": name,
        "contact_id": contact_id,
        "payload": payload,
        "idempotency_key": idempotency_key,
        "received_at": now,
    }
    if idempotency_key is None:
        execute(session, _INSERT, row)
        return event_id
    # RETURNING, not rowcount: psycopg reports no rowcount for INSERT ... ON CONFLICT.
    inserted = execute(session, insert_or_ignore(session, EVENTS, "id"), row).first()
    return event_id if inserted is not None else None


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Store events without idempotency keys, in one round trip; every row has the same keys."""
    if rows:
        execute(session, _INSERT, list(rows))


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
