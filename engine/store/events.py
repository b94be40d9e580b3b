"""Events received."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from engine.store.dialect import insert_ignoring_conflicts
from models.tables import Event


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
        session.execute(insert(Event).values(row))
        return event_id
    # RETURNING, not rowcount: psycopg reports no rowcount for INSERT ... ON CONFLICT.
    inserted = session.execute(
        insert_ignoring_conflicts(session, Event.__table__, row).returning(  # type: ignore[arg-type]
            Event.id
        )
    ).first()
    return event_id if inserted is not None else None


def event_by_idempotency_key(session: Session, key: str) -> Event | None:
    return session.scalars(select(Event).where(Event.idempotency_key == key)).first()


def events_since(
    session: Session, *, contact_id: uuid.UUID, name: str, since: dt.datetime
) -> Sequence[Event]:
    """Events of this name for this contact received at or after `since`, oldest first."""
    return session.scalars(
        select(Event)
        .where(Event.contact_id == contact_id, Event.name == name, Event.received_at >= since)
        .order_by(Event.received_at, Event.id)
    ).all()
