"""Event definitions, by id or name; `/events/send` and `/events/batch` live in events.py."""

from __future__ import annotations

from fastapi import APIRouter

from api import serialize_resources as serialize
from api.deps import Authenticated, Rt
from api.schemas.events import (
    CreateEventDefinition,
    EventDefinition,
    EventDefinitionDeleted,
    EventDefinitionList,
    EventDefinitionRef,
    UpdateEventDefinition,
)
from api.wire import PageQuery
from engine import event_definitions
from engine.db import reads, transaction

router = APIRouter(tags=["events"])


@router.post("/events", status_code=201, summary="Define an event")
def create(body: CreateEventDefinition, rt: Rt, _: Authenticated) -> EventDefinitionRef:
    """Names are unique and `resend:` names are reserved; the schema is optional."""
    with transaction(rt.sessions) as session:
        definition = event_definitions.create_event_definition(
            session, name=body.name, schema=body.event_schema, now=rt.clock.now()
        )
    return EventDefinitionRef(id=str(definition.id))


@router.get("/events", summary="List event definitions")
def list_definitions(
    rt: Rt,
    _: Authenticated,
    cursor: PageQuery,
) -> EventDefinitionList:
    with reads(rt.read_sessions) as session:
        page = event_definitions.list_event_definitions(
            session, limit=cursor.limit, after=cursor.after, before=cursor.before
        )
    return serialize.page_body(EventDefinitionList, page, serialize.event_definition_item)


@router.get("/events/{event_id}", summary="Retrieve an event definition by id or name")
def get(event_id: str, rt: Rt, _: Authenticated) -> EventDefinition:
    with reads(rt.read_sessions) as session:
        definition = event_definitions.find_event_definition(session, event_id)
    return serialize.event_definition(definition)


@router.patch("/events/{event_id}", summary="Replace an event definition's schema")
def update(
    event_id: str, body: UpdateEventDefinition, rt: Rt, _: Authenticated
) -> EventDefinitionRef:
    """`schema: null` removes the schema."""
    with transaction(rt.sessions) as session:
        definition = event_definitions.update_event_definition(
            session, event_id, schema=body.event_schema, now=rt.clock.now()
        )
    return EventDefinitionRef(id=str(definition.id))


@router.delete("/events/{event_id}", summary="Delete an event definition by id or name")
def delete(event_id: str, rt: Rt, _: Authenticated) -> EventDefinitionDeleted:
    with transaction(rt.sessions) as session:
        key = event_definitions.delete_event_definition(session, event_id, now=rt.clock.now())
    return EventDefinitionDeleted(id=str(key))
