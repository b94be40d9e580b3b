"""Producers on the broker: `automations.events.send` (one event) and
`automations.events.send_batch` (up to 100, all or nothing), the same ingestion as
POST /events/send and POST /events/batch.

The message is the event's only copy until ingestion commits: a database that is away must not
lose it. A retry is a new message with a countdown (the original is then acked), and it keeps
the task id, from which an event without the producer's idempotency key gets one: a retry after
a commit whose outcome was unknown ingests once."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from celery import Celery
from sqlalchemy.exc import InterfaceError, OperationalError

from engine.db import transaction
from engine.dispatch import Dispatcher, commit_then_dispatch
from engine.errors import InvalidInput, NotFound
from engine.group_commit import commit_group
from engine.ingest import Batch, EventRequest, Ingested, RejectedEvent, ingest_events
from engine.runtime import Runtime
from tasks.event_groups import grouped_base

log = logging.getLogger(__name__)

SEND = "automations.events.send"
SEND_BATCH = "automations.events.send_batch"
MAX_BATCH = 100
EVENT_FIELDS = frozenset({"event", "email", "contact_id", "payload", "idempotency_key"})
# A fault test kills the worker here, between a group's commit and its publish and acks.
GROUP_COMMITTED = "events.group_committed"
# The database being away is worth waiting for; a refused event is not (see _refused).
RETRIED = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 30,
}


class Holder(Protocol):
    def get(self) -> Runtime: ...


def register_event_tasks(app: Celery, holder: Holder, dispatcher: Dispatcher) -> None:
    """The two producer tasks, under their stable names."""

    def ingest_group(messages: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any] | None]:
        """`send_event` for many messages, in one transaction: each one's answer, None for a
        malformed one (it goes alone, and fails as the task's call would)."""
        rt = holder.get()
        wellformed = [
            (index, task_id, kwargs)
            for index, (task_id, kwargs) in enumerate(messages)
            if "event" in kwargs and kwargs.keys() <= EVENT_FIELDS
        ]
        outcomes = commit_group(
            rt,
            dispatcher,
            [send_request(kwargs, task_id) for _, task_id, kwargs in wellformed],
            committed=lambda: rt.checkpoint(GROUP_COMMITTED),
        )
        answers: list[dict[str, Any] | None] = [None] * len(messages)
        for (index, task_id, _), outcome in zip(wellformed, outcomes, strict=True):
            answers[index] = _answer(outcome, task_id)
        return answers

    @app.task(
        name=SEND,
        shared=False,
        bind=True,
        base=grouped_base(ingest_group),
        personal_kwargs=True,
        **RETRIED,
    )
    def send_event(
        task: Any,
        event: str,
        email: str | None = None,
        contact_id: str | None = None,
        payload: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        kwargs = {"event": event, "email": email, "contact_id": contact_id, "payload": payload}
        request = send_request({**kwargs, "idempotency_key": idempotency_key}, task.request.id)
        answer = _ingest(holder.get(), dispatcher, [request], task.request.id)
        return answer if "refused" in answer else answer["events"][0]

    @app.task(name=SEND_BATCH, shared=False, bind=True, personal_kwargs=True, **RETRIED)
    def send_batch(task: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            requests = batch_requests(events, task.request.id)
        except RejectedEvent as rejected:
            return _refused(rejected, task.request.id)
        return _ingest(holder.get(), dispatcher, requests, task.request.id)


def send_request(kwargs: dict[str, Any], task_id: str) -> EventRequest:
    """The event of a send message; without the producer's key, the task id stands in."""
    return EventRequest(
        kwargs["event"],
        kwargs.get("email"),
        kwargs.get("contact_id"),
        kwargs.get("payload"),
        _key(kwargs.get("idempotency_key"), f"celery-task:{task_id}"),
    )


def _key(given: Any, otherwise: str) -> Any:  # unchecked until the ingestion checks it
    """The producer's idempotency key, an integer taken as its digits (an order number; stored
    so before keys were checked); without one, `otherwise`. A key of another type is the
    ingestion's to refuse."""
    if given is None or given == "":
        return otherwise
    if isinstance(given, int) and not isinstance(given, bool):
        return str(given)
    return given


def batch_requests(events: object, task_id: str) -> list[EventRequest]:
    """The batch's events as requests, each with its idempotency key (the producer's, else
    one made of the task id and its index); RejectedEvent for a malformed one."""
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH:
        error = InvalidInput(f"`events` must be a list of 1 to {MAX_BATCH} events", field="events")
        raise RejectedEvent(0, error)
    requests = []
    for index, item in enumerate(events):
        unknown = (
            sorted(set(item) - EVENT_FIELDS) if isinstance(item, dict) else ["(not an object)"]
        )
        if unknown or "event" not in item:
            message = f"unknown fields {unknown}" if unknown else "Missing `event` field."
            raise RejectedEvent(index, InvalidInput(message, field="event"))
        key = _key(item.get("idempotency_key"), f"celery-task:{task_id}:{index}")
        requests.append(
            EventRequest(
                item["event"], item.get("email"), item.get("contact_id"), item.get("payload"), key
            )
        )
    return requests


def _ingest(
    rt: Runtime, dispatcher: Dispatcher, requests: list[EventRequest], task_id: str
) -> dict[str, Any]:
    try:
        batch = commit_then_dispatch(
            transaction(rt.sessions),
            dispatcher,
            lambda session: Batch(ingest_events(session, rt, requests, now=rt.clock.now())),
        )
    except RejectedEvent as rejected:
        return _refused(rejected, task_id)
    return {
        "events": [
            {"event_id": str(one.event_id), "runs": [str(r) for r in one.run_ids]}
            for one in batch.results
        ]
    }


def _answer(outcome: Ingested | Exception, task_id: str) -> dict[str, Any] | None:
    """What `send_event` returns for this outcome of a group; None for an error it raises."""
    if isinstance(outcome, Ingested):
        return {"event_id": str(outcome.event_id), "runs": [str(r) for r in outcome.run_ids]}
    if isinstance(outcome, InvalidInput | NotFound):
        return _refused(RejectedEvent(0, outcome), task_id)
    return None


def _refused(rejected: RejectedEvent, task_id: str) -> dict[str, Any]:
    """What the HTTP API answers 422 or 404: retrying cannot help. One line, no trace."""
    error = rejected.error
    if not isinstance(error, InvalidInput | NotFound):
        raise error
    # The log, Celery's line of the task's result and Flower show it: the rule, not the address.
    message = error.loggable
    log.warning("event %d refused (task %s): %s", rejected.index, task_id, message)
    return {"refused": {"index": rejected.index, "code": error.code, "message": message}}
