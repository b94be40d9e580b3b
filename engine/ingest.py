"""Event ingestion: store the event, start runs, resume waits; one transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from engine.dispatch import Dispatch
from engine.errors import InvalidInput, NotFound
from engine.event_schema import check_payload
from engine.outcomes import Completed
from engine.progress import StepRef, new_step_row, record_outcome
from engine.runtime import Runtime
from engine.steps.wait import event_output, matches_filter
from engine.store import automations as automation_store
from engine.store import contacts as contact_store
from engine.store import content as content_store
from engine.store import events as event_store
from engine.store import runs as run_store
from engine.store.contacts import ContactRow
from models.enums import ConnectionType, RunStatus, StepStatus, StepType


@dataclass
class Ingested:
    event_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    duplicate: bool = False
    run_ids: list[uuid.UUID] = field(default_factory=list)
    resumed: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)


def _check_request(
    event: object, email: object, contact_id: object, payload: object
) -> dict[str, Any]:
    if not isinstance(event, str) or not event.strip():
        raise InvalidInput("`event` must be a non-empty string", field="event")
    if len(event) > 255:
        raise InvalidInput("`event` must be at most 255 characters", field="event")
    if (email is None) == (contact_id is None):
        raise InvalidInput("Give exactly one of `contact_id` or `email`", field="contact_id")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise InvalidInput("`email` must be an email address", field="email")
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InvalidInput("`payload` must be an object", field="payload")
    return payload


def _contact(
    session: Session, email: str | None, contact_id: object, now: dt.datetime
) -> ContactRow:
    if email is not None:
        return contact_store.ensure_contact(session, email, now)
    try:
        key = contact_id if isinstance(contact_id, uuid.UUID) else uuid.UUID(str(contact_id))
    except ValueError as exc:
        raise InvalidInput("The `contact_id` must be a valid UUID.", field="contact_id") from exc
    contact = contact_store.lock_contact(session, key)
    if contact is None:
        raise NotFound("Contact not found")
    return contact


def ingest_event(
    session: Session,
    rt: Runtime,
    *,
    event: object,
    email: str | None = None,
    contact_id: object = None,
    payload: object = None,
    idempotency_key: str | None = None,
    now: dt.datetime,
) -> Ingested:
    """Store an event, start a run per enabled listener, resume the contact's matching waits."""
    body = _check_request(event, email, contact_id, payload)
    name = str(event)
    schema = content_store.event_schema(session, name)
    if schema:
        check_payload(schema, body)
    if idempotency_key is not None:
        seen = event_store.event_by_idempotency_key(session, idempotency_key)
        if seen is not None:
            return Ingested(seen.id, seen.contact_id, duplicate=True)
    contact = _contact(session, email, contact_id, now)
    # The contact's row lock orders this against a wait_for_event step registering itself.
    rt.checkpoint("ingest.contact_locked")
    event_id = event_store.insert_event(
        session,
        name=name,
        contact_id=contact.id,
        payload=body,
        idempotency_key=idempotency_key,
        now=now,
    )
    if event_id is None:  # a concurrent producer stored the same idempotency key first
        return Ingested(None, contact.id, duplicate=True)
    result = Ingested(event_id, contact.id)
    _start_runs(session, rt, result, name, now)
    _resume_waits(session, rt, result, contact, name, body, now)
    return result


def _start_runs(
    session: Session, rt: Runtime, result: Ingested, name: str, now: dt.datetime
) -> None:
    assert result.event_id is not None and result.contact_id is not None
    rows: list[dict[str, Any]] = []
    for automation_id, version_id in automation_store.listeners(session, name):
        graph = rt.graph(session, version_id)
        run_id = run_store.insert_run(
            session,
            automation_id=automation_id,
            version_id=version_id,
            contact_id=result.contact_id,
            event_id=result.event_id,
            now=now,
        )
        result.run_ids.append(run_id)
        trigger = graph.trigger
        # The trigger step is the ingestion itself: it completes here, in the same transaction.
        rows.append(
            new_step_row(
                run_id,
                trigger.key,
                trigger.type,
                now,
                status=StepStatus.COMPLETED,
                output={"event_id": str(result.event_id)},
                branch=ConnectionType.DEFAULT,
            )
        )
        targets = graph.next_steps(trigger.key, ConnectionType.DEFAULT)
        for key in targets:
            step = graph.step(key)
            rows.append(new_step_row(run_id, key, step.type, now))
            result.dispatches.append(Dispatch(run_id, key, step.type))
        if not targets:
            run_store.finish_run(session, run_id, RunStatus.COMPLETED, now)
    run_store.insert_steps(session, rows)


def _resume_waits(
    session: Session,
    rt: Runtime,
    result: Ingested,
    contact: ContactRow,
    name: str,
    payload: dict[str, Any],
    now: dt.datetime,
) -> None:
    assert result.event_id is not None
    view = contact_store.contact_view(contact)
    for wait in run_store.waits_for(session, contact_id=contact.id, event_name=name, now=now):
        graph = rt.graph(session, wait.version_id)
        if not matches_filter(graph.step(wait.step_key).config, payload, view):
            continue
        if not run_store.resume_wait(session, wait.run_id, wait.step_key, now=now):
            continue  # its timeout fired first
        rt.checkpoint("ingest.wait_resumed")
        run_store.lock_run(session, wait.run_id)
        outcome = Completed(
            branch=ConnectionType.EVENT_RECEIVED,
            output=event_output(result.event_id, name, payload, now),
        )
        ref = StepRef(wait.run_id, wait.step_key, StepType.WAIT_FOR_EVENT)
        result.dispatches.extend(record_outcome(session, rt, graph, ref, outcome, now=now))
        result.resumed.append((wait.run_id, wait.step_key))
