"""Sending events: one, or a batch of up to 100 in one transaction."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from api.deps import Rt, Sender, Sending, any_key, bearer_key, sending_key
from api.event_groups import EventGroups
from api.plain_body import documented_body, json_body, validated
from api.schemas.events import EventSent, EventsSent, SendEvent
from engine.db import transaction
from engine.dispatch import commit_then_dispatch
from engine.errors import InvalidInput
from engine.ingest import (
    Batch,
    EventRequest,
    RejectedEvent,
    ingest_events,
)

router = APIRouter(tags=["events"])

MAX_BATCH = 100
JSON = "application/json"


def _accepted(content: dict[str, Any] | list[Any]) -> Response:
    # Rendered here, not by FastAPI through the response model: validating and serialising
    # our own two-field answer through pydantic cost more than ingesting some events.
    return Response(json.dumps(content, separators=(",", ":")), 202, media_type=JSON)


def _sent(event: str) -> dict[str, str]:
    return {"object": "event", "event": event}


@router.post(
    "/events/send",
    status_code=202,
    response_model=EventSent,
    summary="Send an event for a contact",
    openapi_extra=documented_body(SendEvent, key_scheme=bearer_key.scheme_name),
)
async def send_event(request: Request) -> Response:
    """Start a run for every enabled automation listening for the event; resume waits.

    Committed before the answer; events that arrive together share the transaction."""
    # No parameters for FastAPI to solve (api/plain_body.py): the key first, then the body.
    await sending_key(request, await any_key(request, None))
    raw = await json_body(request)
    body = validated(SendEvent, raw)
    groups: EventGroups = request.app.state.event_groups
    await groups.ingest(EventRequest(body.event, body.email, body.contact_id, body.payload))
    return _accepted(_sent(body.event))


@router.post(
    "/events/batch",
    status_code=202,
    response_model=EventsSent,
    summary="Send up to 100 events at once",
)
def send_events(
    body: Annotated[list[SendEvent], Body(min_length=1, max_length=MAX_BATCH)],
    rt: Rt,
    sender: Sender,
    _: Sending,
) -> Response:
    """All or nothing: one invalid event refuses the batch and nothing is stored."""
    requests = [
        EventRequest(item.event, item.email, item.contact_id, item.payload) for item in body
    ]
    try:
        commit_then_dispatch(
            transaction(rt.sessions),
            sender,
            lambda s: Batch(ingest_events(s, rt, requests, now=rt.clock.now())),
        )
    except RejectedEvent as rejected:
        field = getattr(rejected.error, "field", None)
        where = f"[{rejected.index}].{field}" if field else f"[{rejected.index}]"
        raise InvalidInput(f"events{where}: {rejected.message}", field=where) from rejected
    return _accepted({"object": "list", "data": [_sent(item.event) for item in body]})
