"""The throwaway store a simulation runs in: an in-memory SQLite database on a virtual clock.

It holds copies of what a run may read from the real database (templates, domains, segments,
event definitions, a stored contact), the contact and the automation being simulated, and then
whatever the real engine code writes while it plays the run. It is dropped with the simulation.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Engine, Table
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool, StaticPool

from engine.addresses import AddressError, canonical_email
from engine.clock import FrozenClock
from engine.contacts import create_contact
from engine.db import create_db_engine, create_schema, create_session_factory, transaction
from engine.errors import InvalidInput
from engine.graph import Graph
from engine.mail.recording import RecordingTransport
from engine.runtime import Runtime
from engine.scenario import ContactSpec, within
from engine.settings import Settings
from engine.store import sandbox as sandbox_store
from engine.store.core import CONTACTS, DOMAINS, EVENT_DEFINITIONS
from models.enums import StepType
from models.tables import Segment

SEGMENTS = cast(Table, Segment.__table__)
_CONTACT_DEFAULTS: dict[str, Any] = {
    "first_name": None,
    "last_name": None,
    "unsubscribed": False,
    "properties": {},
}


@dataclass
class Catalogue:
    """The rows of the real database a run may read, copied once, read-only."""

    templates: list[dict[str, Any]] = field(default_factory=list)
    # The versions the templates send (their current_version_id).
    template_versions: list[dict[str, Any]] = field(default_factory=list)
    domains: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    event_definitions: list[dict[str, Any]] = field(default_factory=list)
    contact: dict[str, Any] | None = None


def read_catalogue(
    session: Session, graph: Graph, event_names: Iterable[str], contact: ContactSpec
) -> Catalogue:
    """Copy what the graph's steps will look up: its templates (by id or alias, as a send does),
    every domain, its segments, the events' definitions, and the stored contact: by its id, or
    the one with the given email if there is one (an event for that email would reach it)."""
    ids, aliases, segment_ids = set(), set(), set()
    for step in graph.steps:
        if step.type == StepType.SEND_EMAIL:
            ref = step.config["template"]
            if ref.get("id") is not None:
                ids.add(str(ref["id"]))
            else:
                aliases.add(str(ref["alias"]))
        elif step.type == StepType.ADD_TO_SEGMENT:
            segment_ids.add(uuid.UUID(step.config["segment_id"]))
    templates = sandbox_store.templates_named(session, ids, aliases)
    return Catalogue(
        templates=templates,
        template_versions=sandbox_store.current_template_versions(session, templates),
        domains=sandbox_store.all_rows(session, DOMAINS),
        segments=sandbox_store.rows_where(session, SEGMENTS, "id", segment_ids),
        event_definitions=sandbox_store.rows_where(
            session, EVENT_DEFINITIONS, "name", set(event_names)
        ),
        contact=_stored_contact(session, contact),
    )


def _stored_contact(session: Session, contact: ContactSpec) -> dict[str, Any] | None:
    if contact.stored_id is None:
        try:
            email = canonical_email(contact.fields.get("email"))
        except AddressError:  # no stored contact has it; seeding says what is wrong with it
            return None
        found = sandbox_store.rows_where(session, CONTACTS, "email", [email])
        return found[0] if found else None
    found = sandbox_store.rows_where(session, CONTACTS, "id", [contact.stored_id])
    if not found:
        raise InvalidInput(
            f"`contact.id`: no contact has the id {contact.stored_id}", field="contact.id"
        )
    return found[0]


@functools.cache
def _empty_database() -> tuple[Engine, sqlite3.Connection]:
    """One in-memory database holding the empty schema, which each sandbox starts as a copy of
    (creating the tables anew costs tens of milliseconds; copying them, about one)."""
    database = sqlite3.connect(":memory:", check_same_thread=False)
    db_engine = create_db_engine("sqlite://", poolclass=StaticPool, creator=lambda: database)
    create_schema(db_engine)
    return db_engine, database  # the engine is kept so that its pool never closes the database


_COPYING = threading.Lock()


def _copy_of_empty_database() -> sqlite3.Connection:
    target = sqlite3.connect(":memory:", check_same_thread=False)
    with _COPYING:
        _empty_database()[1].backup(target)
    return target


@functools.cache
def _sandbox_engine() -> Engine:
    """The one engine of every sandbox: each connection it opens is a new database.

    One engine, not one per sandbox, because an engine caches each statement it compiles, and
    compiling is most of the work of a simulation that starts with a cold cache.
    """
    return create_db_engine("sqlite://", poolclass=NullPool, creator=_copy_of_empty_database)


@dataclass(frozen=True)
class Seeded:
    email: str  # the contact's, normalized
    automation_id: uuid.UUID


class Sandbox:
    """A runtime whose database, clock and transport belong to one simulation."""

    def __init__(self, settings: Settings, start: dt.datetime) -> None:
        self.start = start
        self.clock = FrozenClock(start)
        self.transport = RecordingTransport()
        # The sandbox's database lives as long as this connection, which all its sessions use.
        self._connection = _sandbox_engine().connect()
        self.runtime = Runtime(
            settings.model_copy(
                # Virtual time runs at the real pace whatever the server's demo scale; nothing
                # is injected, and no setting may point the sandbox at a real database. Each
                # step is its own execution, on its own tick: inline steps would share the tick
                # of the step before, and the timeline's order would follow the server's
                # AUTOMATIONS_INLINE_STEPS instead of the run.
                update={
                    "time_scale": 1.0,
                    "fault_injection": "",
                    "database_url": "sqlite://",
                    "inline_steps": 0,
                }
            ),
            sessions=create_session_factory(self._connection),
            clock=self.clock,
            transport=self.transport,
        )

    def session(self) -> AbstractContextManager[Session]:
        """A transaction on the sandbox's database (commit on success)."""
        return transaction(self.runtime.sessions)

    def seed(self, catalogue: Catalogue, contact: ContactSpec, graph: Graph) -> Seeded:
        """The copied rows, the contact (a stored one with the given fields over it) and the
        automation, enabled, with the graph as its current version."""
        stored = catalogue.contact or {}
        values = {**_CONTACT_DEFAULTS, **stored, **contact.fields}
        now = self.clock.now()
        with self.session() as session:
            sandbox_store.insert_templates(
                session, catalogue.templates, catalogue.template_versions
            )
            sandbox_store.insert_rows(session, DOMAINS, catalogue.domains)
            sandbox_store.insert_rows(session, SEGMENTS, catalogue.segments)
            sandbox_store.insert_rows(session, EVENT_DEFINITIONS, catalogue.event_definitions)
            # Created as the API creates a contact, so it is checked by the same rules.
            with within("contact"):
                created = create_contact(
                    session,
                    email=str(values["email"]),
                    first_name=values["first_name"],
                    last_name=values["last_name"],
                    unsubscribed=values["unsubscribed"],
                    properties=values["properties"] or {},
                    now=now,
                    limits=self.runtime.json_limits,
                )
            if stored:
                # The stored contact's id, which its unsubscribe link and `contact.id` carry.
                sandbox_store.rekey_contact(
                    session, created.id, new_id=stored["id"], created_at=stored["created_at"]
                )
            automation_id = sandbox_store.insert_automation(
                session, graph=graph.to_dict(), trigger_event=graph.event_name, now=now
            )
        return Seeded(email=created.email, automation_id=automation_id)

    def close(self) -> None:
        self._connection.close()


@contextmanager
def open_sandbox(settings: Settings, start: dt.datetime) -> Iterator[Sandbox]:
    """A sandbox for one simulation, dropped (with its database) on the way out."""
    box = Sandbox(settings, start)
    try:
        yield box
    finally:
        box.close()
