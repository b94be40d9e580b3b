"""Events received."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BindParameter,
    Row,
    bindparam,
    insert,
    literal,
    null,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import Session

from engine.store.core import AUTOMATIONS, EVENT_DEFINITIONS, EVENTS, execute
from engine.store.dialect import insert_or_ignore
from models.enums import AutomationStatus
from models.tables import Event

_INSERT = insert(EVENTS)
_BY_KEYS = select(EVENTS.c.idempotency_key, EVENTS.c.id, EVENTS.c.contact_id).where(
    EVENTS.c.idempotency_key.in_(bindparam("keys", expanding=True))
)


# The keys as one array: the statement's text is the same for any number of keys (prepared
# once per connection), where an IN list grows with the batch.
@dataclass
class EventRoute:
    """Where events of one name go: the schema their payload must fit, and the (automation id,
    current version id) of every enabled automation they trigger."""

    schema: dict[str, Any] | None = None
    listeners: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)


_NAMES: BindParameter[Any] = bindparam("names", expanding=True)
# Both in one round trip: an event's ingestion asks them of every event name it carries.
_ROUTES = union_all(
    select(
        literal("listener").label("kind"),
        AUTOMATIONS.c.trigger_event.label("name"),
        AUTOMATIONS.c.id,
        AUTOMATIONS.c.current_version_id,
        type_coerce(null(), EVENT_DEFINITIONS.c.schema.type).label("schema"),
    ).where(
        AUTOMATIONS.c.trigger_event.in_(_NAMES),
        AUTOMATIONS.c.status == AutomationStatus.ENABLED,
        AUTOMATIONS.c.deleted_at.is_(None),
        AUTOMATIONS.c.current_version_id.is_not(None),
    ),
    select(
        literal("schema"),
        EVENT_DEFINITIONS.c.name,
        type_coerce(null(), AUTOMATIONS.c.id.type),
        type_coerce(null(), AUTOMATIONS.c.current_version_id.type),
        EVENT_DEFINITIONS.c.schema,
    ).where(EVENT_DEFINITIONS.c.name.in_(_NAMES)),
)


def event_routes(session: Session, names: Sequence[str]) -> dict[str, EventRoute]:
    """The route of each of these event names (an unknown name: no schema, no listener)."""
    routes = {name: EventRoute() for name in names}
    for row in execute(session, _ROUTES, {"names": sorted(routes)}):
        route = routes[row.name]
        if row.kind == "schema":
            route.schema = row.schema
        else:
            route.listeners.append((row.id, row.current_version_id))
    return routes


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
    rows = execute(session, _BY_KEYS, {"keys": list(keys)})
    return {row.idempotency_key: row for row in rows}


def events_since(
    session: Session, *, contact_id: uuid.UUID, name: str, since: dt.datetime
) -> Sequence[Event]:
    """Events of this name for this contact received at or after `since`, oldest first."""
    return session.scalars(
        select(Event)
        .where(Event.contact_id == contact_id, Event.name == name, Event.received_at >= since)
        .order_by(Event.received_at, Event.id)
    ).all()
