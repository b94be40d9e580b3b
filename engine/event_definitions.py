"""Event definitions: the names automations listen for, with an optional payload schema."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.orm import Session

from engine.content import as_uuid
from engine.errors import InvalidInput, NotFound
from engine.event_schema import validate_schema
from engine.store import content as content_store
from engine.store.paging import Page
from engine.stored_text import check_text
from models.tables import EventDefinition

RESERVED_PREFIX = "resend:"


def _check_schema(schema: dict[str, Any] | None) -> dict[str, str] | None:
    return None if schema is None else validate_schema(schema)


def find_event_definition(session: Session, ref: str) -> EventDefinition:
    """The definition named by its id or its name."""
    key = as_uuid(ref)
    definition = content_store.get_event_definition(session, key) if key is not None else None
    if definition is None:
        check_text(ref, "event_id")
        definition = content_store.get_event_definition_by_name(session, ref)
    if definition is None:
        raise NotFound("Event not found")
    return definition


def create_event_definition(
    session: Session, *, name: str, schema: dict[str, Any] | None, now: dt.datetime
) -> EventDefinition:
    """A new definition; `resend:` names are reserved and names are unique."""
    if not name.strip():
        raise InvalidInput("`name` must not be blank", field="name")
    check_text(name, "name")
    if name.lower().startswith(RESERVED_PREFIX):
        raise InvalidInput(
            f"`name` must not start with `{RESERVED_PREFIX}`: that prefix is reserved"
            " for system events",
            field="name",
        )
    checked = _check_schema(schema)
    definition = content_store.unique_write(
        session,
        lambda: content_store.create_event_definition(session, name=name, schema=checked, now=now),
    )
    if definition is None:
        raise InvalidInput(f"An event named `{name}` already exists.", field="name")
    return definition


def update_event_definition(
    session: Session, ref: str, *, schema: dict[str, Any] | None, now: dt.datetime
) -> EventDefinition:
    """Replace the schema (null removes it); the name is fixed."""
    definition = find_event_definition(session, ref)
    changes = {"schema": _check_schema(schema), "updated_at": now}
    return content_store.update_fields(session, definition, changes)


def delete_event_definition(session: Session, ref: str, *, now: dt.datetime) -> uuid.UUID:
    """Delete the definition; events of that name are still accepted, without a schema."""
    definition = find_event_definition(session, ref)
    content_store.delete_row(session, definition, now)
    return definition.id


def list_event_definitions(
    session: Session, *, limit: int, after: uuid.UUID | None, before: uuid.UUID | None
) -> Page[EventDefinition]:
    """Definitions, newest first."""
    return content_store.list_event_definitions(session, limit=limit, after=after, before=before)
