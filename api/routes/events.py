"""Sending events: one, or a batch of up to 100 in one transaction."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from api.deps import Rt, Sender, Sending
from api.schemas.events import EventSent, EventsSent, SendEvent
from engine.db import transaction
from engine.dispatch import commit_then_dispatch
from engine.errors import InvalidInput
from engine.ingest import (
    Batch,
    EventRequest,
    Ingested,
    RejectedEvent,
    ingest_event,
    ingest_events,
)

router = APIRouter(tags=["events"])

MAX_BATCH = 100


def _ingest(session: Any, rt: Rt, body: SendEvent) -> Ingested:
    return ingest_event(
        session,
        rt,
        event=body.event,
        email=body.email,
        contact_id=body.contact_id,
        payload=body.payload,
        now=rt.clock.now(),
    )


@router.post("/events/send", status_code=202, summary="Send an event for a contact")
def send_event(body: SendEvent, rt: Rt, sender: Sender, _: Sending) -> EventSent:
    """Start a run for every enabled automation listening for the event; resume waits."""
    commit_then_dispatch(transaction(rt.sessions), sender, lambda s: _ingest(s, rt, body))
    return EventSent(event=body.event)


@router.post("/events/batch", status_code=202, summary="Send up to 100 events at once")
def send_events(
    body: Annotated[list[SendEvent], Body(min_length=1, max_length=MAX_BATCH)],
    rt: Rt,
    sender: Sender,
    _: Sending,
) -> EventsSent:
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
    return EventsSent(data=[EventSent(event=item.event) for item in body])
