"""Event ingestion: store the event, start runs, resume waits; one transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from engine.addresses import check_address
from engine.dispatch import Dispatch
from engine.errors import AutomationsError, InvalidInput, NotFound
from engine.event_schema import check_payload
from engine.json_limits import JsonLimits
from engine.outcomes import Completed
from engine.progress import RunStart, StepRef, record_outcome, start_run
from engine.runtime import Runtime
from engine.steps.wait_for_event import event_output, matches_filter
from engine.store import contacts as contact_store
from engine.store import events as event_store
from engine.store import intake as intake_store
from engine.store import runs as run_store
from engine.store.contacts import ContactRow
from engine.stored_text import check_text
from models.enums import ConnectionType, RunStatus, StepType
from models.ids import new_id


@dataclass
class Ingested:
    event_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    duplicate: bool = False
    run_ids: list[uuid.UUID] = field(default_factory=list)
    resumed: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)


@dataclass(frozen=True)
class _Checked:
    payload: dict[str, Any]
    email: str | None


def _check_request(
    event: object,
    email: object,
    contact_id: object,
    payload: object,
    limits: JsonLimits,
    addresses: Mapping[str, str],
) -> _Checked:
    """The event's payload and its contact's address, checked; `addresses` holds those already
    found valid (as given: canonical), so that a batch parses each once."""
    if not isinstance(event, str) or not event.strip():
        raise InvalidInput("`event` must be a non-empty string", field="event")
    if len(event) > 255:
        raise InvalidInput("`event` must be at most 255 characters", field="event")
    if (email is None) == (contact_id is None):
        raise InvalidInput("Give exactly one of `contact_id` or `email`", field="contact_id")
    address = None
    if email is not None:
        known = addresses.get(email) if isinstance(email, str) else None
        address = known if known is not None else check_address(email, field="email")
    if payload is None:
        return _Checked({}, address)
    if not isinstance(payload, dict):
        raise InvalidInput("`payload` must be an object", field="payload")
    limits.check(payload, field="payload")
    return _Checked(payload, address)


@dataclass(frozen=True)
class Batch:
    """The events of one batch, ingested in one transaction."""

    results: list[Ingested]

    @property
    def dispatches(self) -> list[Dispatch]:
        return [d for result in self.results for d in result.dispatches]


@dataclass(frozen=True)
class EventRequest:
    """One event as a producer sends it (one of email or contact_id)."""

    event: object
    email: str | None = None
    contact_id: object = None
    payload: object = None
    idempotency_key: str | None = None


class RejectedEvent(AutomationsError):
    """An event of a batch was refused; nothing of the batch was written."""

    def __init__(self, index: int, error: AutomationsError) -> None:
        super().__init__(error.message, code=error.code)
        self.index = index
        self.error = error


@dataclass
class _Pending:
    """An event of a batch on its way in: checked, then given its contact and id."""

    index: int
    name: str
    payload: dict[str, Any]
    email: str | None
    contact_key: uuid.UUID | None
    idempotency_key: str | None
    result: Ingested | None = None


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
    request = EventRequest(event, email, contact_id, payload, idempotency_key)
    try:
        return ingest_events(session, rt, [request], now=now)[0]
    except RejectedEvent as rejected:
        raise rejected.error from None


def ingest_events(
    session: Session, rt: Runtime, requests: Sequence[EventRequest], *, now: dt.datetime
) -> list[Ingested]:
    """`ingest_event` for many events in one transaction, with a statement per kind of row
    rather than per event. Events are taken in order: an earlier one resumes a wait first.
    Raises RejectedEvent (with the index) for the first bad event; the caller rolls back."""
    _check_lookups(requests)
    names = sorted({request.event for request in requests if isinstance(request.event, str)})
    addresses: dict[str, str] = {}
    contacts_of = _contacts_of(requests, addresses)
    locked: list[ContactRow] | None = None
    seen: dict[str, intake_store.StoredKey] = {}
    if contacts_of is None:  # keyed (or malformed): the keys' events, not yet the contacts
        keys = [request.idempotency_key for request in requests if request.idempotency_key]
        routes, seen = intake_store.routes_and_keys(session, names=names, keys=keys)
    else:  # one round trip for both; the contacts of a refused event roll back with it
        emails, ids = contacts_of
        routes, locked = intake_store.routes_and_contacts(
            session, names=names, emails=emails, ids=ids, now=now
        )
    pending = _check_all(requests, routes, rt.json_limits, addresses)
    for item in pending:
        duplicate = seen.get(item.idempotency_key or "")
        if duplicate is not None:
            item.result = Ingested(duplicate.id, duplicate.contact_id, duplicate=True)
    fresh = [item for item in pending if item.result is None]
    contacts = _lock_contacts(session, fresh, now, locked)
    # The contacts' row locks order this against wait_for_event steps registering themselves.
    rt.checkpoint("ingest.contact_locked")
    stored, waits = _store(session, rt, fresh, contacts, routes, now)
    _resume_waits(session, rt, stored, waits, now)
    return [item.result for item in pending if item.result is not None]


# The column's width (models/tables.py Event.idempotency_key).
MAX_IDEMPOTENCY_KEY = 256


def _check_lookups(requests: Sequence[EventRequest]) -> None:
    """Refuse an event name or a producer's key the database cannot hold, before any statement
    looks it up."""
    for index, request in enumerate(requests):
        try:
            check_text(request.event, "event")
        except InvalidInput as error:
            raise RejectedEvent(index, error) from None
        key: object = request.idempotency_key
        if key is None:
            continue
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or "\x00" in key:
            message = (
                f"`idempotency_key` must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters, "
                "without NUL"
            )
            raise RejectedEvent(index, InvalidInput(message, field="idempotency_key"))


def _check_all(
    requests: Sequence[EventRequest],
    routes: dict[str, event_store.EventRoute],
    limits: JsonLimits,
    addresses: Mapping[str, str],
) -> list[_Pending]:
    checked = []
    for index, request in enumerate(requests):
        try:
            body = _check_request(
                request.event,
                request.email,
                request.contact_id,
                request.payload,
                limits,
                addresses,
            )
            name = str(request.event)
            schema = routes[name].schema
            if schema:
                check_payload(schema, body.payload)
            contact_key = None if request.contact_id is None else _uuid(request.contact_id)
        except AutomationsError as error:
            raise RejectedEvent(index, error) from error
        checked.append(
            _Pending(index, name, body.payload, body.email, contact_key, request.idempotency_key)
        )
    return checked


def _uuid(value: object) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError as exc:
        raise InvalidInput("The `contact_id` must be a valid UUID.", field="contact_id") from exc


def _contacts_of(
    requests: Sequence[EventRequest], addresses: dict[str, str]
) -> tuple[list[str], list[uuid.UUID]] | None:
    """The (normalized) emails and the ids of the events' contacts, to be ensured with the
    routes' lookup; None if that cannot be: an event is keyed (its contact is only ensured if
    it is not a duplicate) or not well formed (refused before any contact is written).
    Each address found valid goes into `addresses`, as given: normalized."""
    emails: list[str] = []
    ids: list[uuid.UUID] = []
    for request in requests:
        if request.idempotency_key is not None:
            return None
        try:
            if request.email is not None and request.contact_id is None:
                address = check_address(request.email, field="email")
                addresses[request.email] = address  # a str, or check_address refused it
                emails.append(address)
            elif request.contact_id is not None and request.email is None:
                ids.append(_uuid(request.contact_id))
            else:
                return None
        except AutomationsError:
            return None
    return emails, ids


def _lock_contacts(
    session: Session, items: list[_Pending], now: dt.datetime, locked: list[ContactRow] | None
) -> dict[uuid.UUID | str, ContactRow]:
    """Each event's contact, by id and by email: created for an email, locked either way
    (already, if `locked` is given)."""
    if not items:
        return {}
    rows = locked
    if rows is None:
        rows = contact_store.ensure_contacts(
            session,
            emails=[item.email for item in items if item.email],
            ids=[item.contact_key for item in items if item.contact_key],
            now=now,
        )
    found: dict[uuid.UUID | str, ContactRow] = {}
    for row in rows:
        found[row.id] = found[row.email] = row
    for item in items:
        if (item.contact_key or item.email) not in found:
            raise RejectedEvent(item.index, NotFound("Contact not found"))
    return found


def _store(
    session: Session,
    rt: Runtime,
    items: list[_Pending],
    contacts: dict[uuid.UUID | str, ContactRow],
    routes: dict[str, event_store.EventRoute],
    now: dt.datetime,
) -> tuple[list[tuple[_Pending, ContactRow]], list[run_store.WaitingStep]]:
    """Insert the events, a run per listener of each and its first steps, and read the waits
    they may resume (one statement on PostgreSQL). An event whose idempotency key a concurrent
    producer stored first becomes a duplicate, and starts no run. The stored events, with
    their contacts; the waits."""
    if not items:
        return [], []
    events: list[dict[str, Any]] = []
    starts: list[tuple[_Pending, RunStart]] = []
    for item in items:
        contact = contacts[item.contact_key or item.email or ""]
        received_at = _received_at(item, now)
        event_id = new_id()
        item.result = Ingested(event_id, contact.id)
        events.append(
            {
                "id": event_id,
                "name": item.name,
                "contact_id": contact.id,
                "payload": item.payload,
                "idempotency_key": item.idempotency_key,
                "received_at": received_at,
            }
        )
        for automation_id, version_id in routes[item.name].listeners:
            start = start_run(
                rt.graph(session, version_id),
                run_id=new_id(),
                automation_id=automation_id,
                version_id=version_id,
                contact_id=contact.id,
                event_id=event_id,
                now=received_at,
            )
            starts.append((item, start))
    # One order of unique-key inserts for every transaction: two cannot wait in a cycle.
    events.sort(key=lambda row: (row["idempotency_key"] is not None, str(row["idempotency_key"])))
    written = intake_store.store_ingested(
        session,
        events=events,
        runs=[start.run for _, start in starts],
        steps=[step for _, start in starts for step in start.steps],
        contact_ids=[contacts[item.contact_key or item.email or ""].id for item in items],
        event_names=[item.name for item in items],
        now=now,
    )
    stored = []
    for item in items:
        result = item.result
        assert result is not None
        if item.idempotency_key is not None and result.event_id not in written.keyed:
            result.event_id, result.duplicate = None, True
        else:
            stored.append((item, contacts[item.contact_key or item.email or ""]))
    for item, start in starts:
        result = item.result
        assert result is not None
        if result.duplicate:
            continue
        result.run_ids.append(start.run["id"])
        result.dispatches.extend(start.dispatches)
        if start.ended:
            ended_at = _received_at(item, now)
            run_store.finish_run(session, start.run["id"], RunStatus.COMPLETED, ended_at)
    return stored, written.waits


def _received_at(item: _Pending, now: dt.datetime) -> dt.datetime:
    """When an event of a transaction's batch was received: a microsecond after the one before
    it, so that a wait tells the events it follows from those that follow it (one sent before
    a run's trigger, but written with it, is not one the run waits for)."""
    return now + dt.timedelta(microseconds=item.index)


def _resume_waits(
    session: Session,
    rt: Runtime,
    stored: list[tuple[_Pending, ContactRow]],
    waits: list[run_store.WaitingStep],
    now: dt.datetime,
) -> None:
    resumed: set[tuple[uuid.UUID, str]] = set()
    for item, contact in stored:
        view = contact_store.contact_view(contact)
        for wait in waits:
            if wait.contact_id != contact.id or wait.wait_event != item.name:
                continue
            if (wait.run_id, wait.step_key) in resumed:
                continue  # an earlier event of this batch resumed it
            if _resume(session, rt, item, wait, view, _received_at(item, now)):
                resumed.add((wait.run_id, wait.step_key))


def _resume(
    session: Session,
    rt: Runtime,
    item: _Pending,
    wait: run_store.WaitingStep,
    contact_view: dict[str, Any],
    now: dt.datetime,
) -> bool:
    result = item.result
    assert result is not None and result.event_id is not None
    graph = rt.graph(session, wait.version_id)
    if not matches_filter(graph.step(wait.step_key).config, item.payload, contact_view):
        return False
    if not run_store.resume_wait(session, wait.run_id, wait.step_key, now=now):
        return False  # its timeout fired first
    rt.checkpoint("ingest.wait_resumed")
    run_store.lock_run(session, wait.run_id)
    outcome = Completed(
        branch=ConnectionType.EVENT_RECEIVED,
        output=event_output(result.event_id, item.name, item.payload, now),
    )
    ref = StepRef(wait.run_id, wait.step_key, StepType.WAIT_FOR_EVENT)
    result.dispatches.extend(record_outcome(session, rt, graph, ref, outcome, now=now))
    result.resumed.append((wait.run_id, wait.step_key))
    return True
