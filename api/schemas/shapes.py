"""What every body and answer of the API is built from: ids, timestamps, the list envelope."""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, WithJsonSchema

TIMESTAMP_EXAMPLE = "2026-10-01 12:00:00.000000+00"

# Documented, not re-checked on the way out: api.wire.wire_time writes every timestamp.
Timestamp = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}\+00$",
            "description": "UTC, in PostgreSQL's text form with microseconds",
            "examples": [TIMESTAMP_EXAMPLE],
        }
    ),
]
Id = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]


class Body(BaseModel):
    """A request body: unknown fields and loosely typed values are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Answer(BaseModel):
    """A success answer. Fields are declared in the order Resend writes them on the wire;
    the schema marks defaulted fields (such as `object`) required, since every answer has them."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


ItemT = TypeVar("ItemT")


class ListOf(Answer, Generic[ItemT]):
    """Resend's list envelope; a subclass per item type gives the schema a readable name."""

    object: Literal["list"] = "list"
    has_more: bool
    data: list[ItemT]
