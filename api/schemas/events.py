"""Bodies and answers of the event endpoints: sending events, and event definitions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.shapes import Answer, Body, Id, ListOf, Timestamp

FieldType = Literal["string", "number", "boolean", "date"]


class SendEvent(BaseModel):
    # Documented as engine/ingest.py checks it: exactly one of `contact_id` and `email`.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["contact_id"]}, {"required": ["email"]}]},
    )

    event: str = Field(min_length=1, max_length=255, json_schema_extra={"pattern": r"\S"})
    contact_id: str | None = Field(default=None, json_schema_extra={"format": "uuid"})
    email: str | None = Field(default=None, max_length=320, json_schema_extra={"format": "email"})
    payload: dict[str, Any] | None = None


class EventSent(Answer):
    object: Literal["event"] = "event"
    event: str


class EventsSent(Answer):
    """One entry per event of the batch, in the order sent."""

    object: Literal["list"] = "list"
    data: list[EventSent]


class CreateEventDefinition(Body):
    name: str = Field(min_length=1, max_length=255)
    # `schema` would shadow a BaseModel attribute; the wire name is kept by the alias.
    event_schema: dict[str, Any] | None = Field(default=None, alias="schema")


class UpdateEventDefinition(Body):
    event_schema: dict[str, Any] | None = Field(alias="schema")


class EventDefinitionRef(Answer):
    """The answer to a create or an update."""

    object: Literal["event"] = "event"
    id: Id


class EventDefinitionDeleted(EventDefinitionRef):
    deleted: Literal[True] = True


class EventDefinitionItem(Answer):
    """An event definition as a list shows it."""

    id: Id
    name: str
    event_schema: dict[str, FieldType] | None = Field(serialization_alias="schema")
    created_at: Timestamp
    updated_at: Timestamp


class EventDefinitionList(ListOf[EventDefinitionItem]):
    pass


class _EventDefinitionObject(Answer):
    # A base listed last puts its field first: `object` leads, as Resend writes it.
    object: Literal["event"] = "event"


class EventDefinition(EventDefinitionItem, _EventDefinitionObject):
    pass
