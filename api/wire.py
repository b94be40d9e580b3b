"""Resend's wire conventions: timestamps, list envelopes, ids, cursors."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, overload

from fastapi import Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from engine.errors import InvalidInput


@overload
def wire_time(value: dt.datetime) -> str: ...
@overload
def wire_time(value: dt.datetime | None) -> str | None: ...
def wire_time(value: dt.datetime | None) -> str | None:
    """PostgreSQL's text form in UTC with microseconds: `2026-10-01 12:00:00.000000+00`.

    engine/store/reports.py writes the same in SQL for the runs list (tests check they agree).
    """
    if value is None:
        return None
    # Stored times come back in dt.UTC itself: an identity test, not a timedelta per call.
    if value.tzinfo is not dt.UTC and value.utcoffset() != dt.timedelta(0):
        value = value.astimezone(dt.UTC)
    # isoformat is C code, several times faster than strftime on a page of a thousand runs.
    return value.isoformat(" ", "microseconds")[:-3]


class StoredJson(JSONResponse):
    """An answer holding stored free JSON (payloads, outputs, configs, properties).

    FastAPI would serialise a returned dict through pydantic, which refuses values nested
    255 levels deep: a payload stored before the limits at the door would answer 500 forever.
    The json module's limit is the one the value was parsed with when it came in.
    """

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:
            # NaN or Infinity, which SQLite kept before the door refused them: null, as JSON has.
            cleaned = json.loads(json.dumps(content), parse_constant=lambda _: None)
            return super().render(cleaned)


def stored_json(answer: BaseModel) -> StoredJson:
    """A typed answer holding stored free JSON, sent as StoredJson: its fields are taken as
    they are, so pydantic never walks the free JSON (payloads, outputs, configs, properties)."""
    return StoredJson(_plain(answer))


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        fields = type(value).model_fields.items()
        return {
            field.serialization_alias or field.alias or name: _plain(getattr(value, name))
            for name, field in fields
        }
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict) and any(isinstance(item, BaseModel) for item in value.values()):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Enum):
        return value.value
    return value


def list_body(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "has_more": has_more, "data": data}


def written_list(items: str, has_more: bool) -> Response:
    """A list whose items are JSON text already (comma-separated), sent as they are: the same
    bytes as JSONResponse(list_body(...)) of those items."""
    more = b"true" if has_more else b"false"
    body = b'{"object":"list","has_more":%s,"data":[%s]}' % (more, items.encode())
    return Response(body, media_type="application/json")


# How ids, cursors and `limit` are documented in /openapi.json: as what parse_id and
# parse_cursor accept. They stay strings to FastAPI and are checked in the route, so that a
# caller without a key is answered 401 before its parameters are judged, and a bad one gets our
# 422 naming the parameter.
UuidPath = Annotated[str, Path(json_schema_extra={"format": "uuid"})]
UuidQuery = Annotated[str | None, Query(json_schema_extra={"format": "uuid"})]
LIMIT_PATTERN = "^(?:[1-9][0-9]?|100)$"  # exactly what parse_cursor takes
_LIMIT = re.compile(LIMIT_PATTERN)
LimitQuery = Annotated[
    str | None,
    Query(
        description="A whole number from 1 to 100.",
        json_schema_extra={"pattern": LIMIT_PATTERN},
    ),
]


def parse_id(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(
            f"The `{name}` must be a valid UUID.", field=name, code="invalid_parameter"
        ) from None


@dataclass(frozen=True)
class Cursor:
    limit: int
    after: uuid.UUID | None
    before: uuid.UUID | None


def parse_cursor(
    limit: str | None, after: str | None, before: str | None, *, default_limit: int = 20
) -> Cursor:
    """Check `limit` (1..100; `default_limit` when absent) and the cursors (not both at once)."""
    if after is not None and before is not None:
        raise InvalidInput("You can only use `after` or `before`, not both at once.", field="after")
    size = default_limit
    if limit is not None:
        # The plain form only, as documented: int() would also take "+5", "05", " 5" or "1_0".
        if _LIMIT.fullmatch(limit) is None:
            raise InvalidInput(
                "The `limit` must be a whole number from 1 to 100.",
                field="limit",
                code="invalid_parameter",
            )
        size = int(limit)
    return Cursor(
        size,
        parse_id(after, "after") if after is not None else None,
        parse_id(before, "before") if before is not None else None,
    )


def page_query(
    limit: LimitQuery = None, after: UuidQuery = None, before: UuidQuery = None
) -> Cursor:
    """The `limit`, `after` and `before` query parameters of a list."""
    return parse_cursor(limit, after, before)


def runs_page_query(
    limit: LimitQuery = None, after: UuidQuery = None, before: UuidQuery = None
) -> Cursor:
    """As page_query, but without `limit` a runs list returns every run up to the server cap."""
    from engine.reports import RUNS_CAP

    return parse_cursor(limit, after, before, default_limit=RUNS_CAP)


PageQuery = Annotated[Cursor, Depends(page_query)]
RunsPageQuery = Annotated[Cursor, Depends(runs_page_query)]
