"""Event payload schemas: `{field: "string" | "number" | "boolean" | "date"}`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from engine.errors import InvalidInput
from engine.stored_text import text_problem

FIELD_TYPES = ("string", "number", "boolean", "date")


def validate_schema(schema: object, *, field: str = "schema") -> dict[str, str]:
    """Check a schema definition; the schema itself."""
    if not isinstance(schema, dict):
        raise InvalidInput(f"`{field}` must be an object of field name to type", field=field)
    for name, kind in schema.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"`{field}` has an empty field name", field=field)
        problem = text_problem(name)
        if problem is not None:
            raise InvalidInput(f"`{field}`: the field name {name[:20]!r} {problem}", field=field)
        if kind not in FIELD_TYPES:
            raise InvalidInput(
                f"`{field}.{name}` has type {kind!r}: use one of {', '.join(FIELD_TYPES)}",
                field=f"{field}.{name}",
            )
    return dict(schema)


def _fits(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def check_payload(schema: Mapping[str, str], payload: Mapping[str, Any]) -> None:
    """Raise InvalidInput when a payload field declared by the schema has the wrong type.

    Declared fields may be absent (producers add fields over time); present ones must fit.
    """
    for name, kind in schema.items():
        if name in payload and payload[name] is not None and not _fits(kind, payload[name]):
            got = type(payload[name]).__name__
            raise InvalidInput(
                f"`payload.{name}` must be a {kind}"
                + (" (ISO 8601)" if kind == "date" else "")
                + f", got {got}",
                field=f"payload.{name}",
            )
