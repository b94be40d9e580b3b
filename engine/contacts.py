"""Contacts, segments and memberships: the rules behind the contact endpoints."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from engine.addresses import check_address
from engine.errors import InvalidInput, NotFound
from engine.json_limits import JsonLimits
from engine.store import contacts as contact_store
from engine.store import content as content_store
from engine.store import outbox as outbox_store
from engine.store import runs as run_store
from engine.store import segments as segment_store
from engine.store.contacts import RowLock
from engine.store.paging import Page
from engine.stored_text import check_text
from models.tables import Contact, Segment

# Conditions and templates reach a property as `contact.<key>`: a key is one path segment.
_PROPERTY_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,49}")
# contacts.first_name and last_name hold this many characters (the API's bodies say the same).
MAX_NAME = 255


def _as_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def check_property_key(key: object, where: str) -> None:
    """A key that conditions and templates can reach as `contact.<key>`."""
    if not isinstance(key, str) or not _PROPERTY_KEY.fullmatch(key):
        raise InvalidInput(
            f"`{where}`: a property key has 1 to 50 letters, digits or underscores"
            " and does not start with a digit",
            field=where,
        )


def check_name(name: str, value: object) -> None:
    """A first_name or last_name that the contact's column holds."""
    if isinstance(value, str) and len(value) > MAX_NAME:
        raise InvalidInput(
            f"`{name}` holds at most {MAX_NAME} characters, got {len(value)}", field=name
        )
    check_text(value, name)


def check_changes(
    changes: Mapping[str, Any], current: Mapping[str, Any] | None, limits: JsonLimits
) -> None:
    """What a step would write to a contact, held to the rules of the contact endpoints:
    names that fit, flat properties with reachable keys, the merged whole within limits."""
    for name in ("first_name", "last_name"):
        check_name(name, changes.get(name))
    if changes.get("properties") is not None:
        given = _check_properties(changes["properties"], limits)
        limits.check({**(current or {}), **given}, field="properties")


def _check_properties(properties: Mapping[str, Any], limits: JsonLimits) -> dict[str, Any]:
    """Keys that conditions can reach, values that are flat scalars (or null), within limits."""
    for key, value in properties.items():
        where = f"properties.{key}"
        check_property_key(key, where)
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidInput(
                f"`{where}` must be a string, number, boolean or null, got {type(value).__name__}",
                field=where,
            )
    limits.check(dict(properties), field="properties")
    return dict(properties)


def find_contact(
    session: Session, ref: str, *, for_update: bool = False, lock: RowLock | None = None
) -> Contact:
    """The contact named by its id or, for anything that is not a UUID, its email."""
    lock = "update" if for_update else lock
    key = _as_uuid(ref)
    if key is not None:
        contact = contact_store.get_contact(session, key, lock=lock)
    else:
        check_text(ref, "contact_id")
        contact = contact_store.get_contact_by_email(session, ref, lock=lock)
    if contact is None:
        raise NotFound("Contact not found")
    return contact


def find_segment(
    session: Session, segment_id: uuid.UUID, *, lock: RowLock | None = None
) -> Segment:
    segment = segment_store.get_segment(session, segment_id, lock=lock)
    if segment is None:
        raise NotFound("Segment not found")
    return segment


def _segment_ids(session: Session, refs: Sequence[str]) -> list[uuid.UUID]:
    """The segments, held until the commit: one being deleted is waited for, then missing."""
    found = []
    for index, ref in enumerate(refs):
        key = _as_uuid(ref)
        if key is None or segment_store.get_segment(session, key, lock="key_share") is None:
            raise InvalidInput(
                f"`segments[{index}].id`: no segment has the id {ref!r}",
                field=f"segments[{index}].id",
            )
        found.append(key)
    return found


def create_contact(
    session: Session,
    *,
    email: str,
    now: dt.datetime,
    first_name: str | None = None,
    last_name: str | None = None,
    unsubscribed: bool = False,
    properties: Mapping[str, Any] | None = None,
    segment_refs: Sequence[str] = (),
    limits: JsonLimits,
) -> Contact:
    """A new contact, in the given segments; an email already in use is refused."""
    address = check_address(email, field="email")
    check_name("first_name", first_name)
    check_name("last_name", last_name)
    values = _check_properties(properties or {}, limits)
    segment_ids = _segment_ids(session, segment_refs)
    contact = content_store.unique_write(
        session,
        lambda: contact_store.create_contact(
            session,
            email=address,
            now=now,
            first_name=first_name,
            last_name=last_name,
            unsubscribed=unsubscribed,
            properties=values,
        ),
    )
    if contact is None:
        raise InvalidInput(f"A contact with the email `{address}` already exists.", field="email")
    for segment_id in segment_ids:
        segment_store.add_membership(session, segment_id, contact.id, now)
    return contact


def _check_identifiers(contact: Contact, changes: dict[str, Any]) -> None:
    """The `id` and `email` the SDK sends along must name the contact being updated."""
    given_id = changes.pop("id", None)
    if given_id is not None and _as_uuid(given_id) != contact.id:
        raise InvalidInput("`id` does not match the contact being updated.", field="id")
    given_email = changes.pop("email", None)
    if given_email is not None and contact_store.normalize_email(given_email) != contact.email:
        check_address(given_email, field="email")  # a malformed one is told so first
        raise InvalidInput(
            "`email` does not match the contact being updated; a contact's email cannot change.",
            field="email",
        )


def update_contact(
    session: Session,
    ref: str,
    changes: Mapping[str, Any],
    *,
    now: dt.datetime,
    limits: JsonLimits,
) -> Contact:
    """Apply the given fields; `properties` is merged key by key (the result within limits)."""
    contact = find_contact(session, ref, for_update=True)
    fields = dict(changes)
    _check_identifiers(contact, fields)
    for name in ("first_name", "last_name"):
        check_name(name, fields.get(name))
    if "unsubscribed" in fields and fields["unsubscribed"] is None:
        raise InvalidInput("`unsubscribed` must be true or false, not null", field="unsubscribed")
    if fields.get("properties") is not None:
        given = _check_properties(fields["properties"], limits)
        # Updates add keys: it is the merged whole that is stored, and must come back out.
        limits.check({**(contact.properties or {}), **given}, field="properties")
        fields["properties"] = given
    else:
        fields.pop("properties", None)
    contact_store.update_contact(session, contact, fields, now)
    return contact


def delete_contact(session: Session, ref: str, *, now: dt.datetime) -> uuid.UUID:
    """Delete the contact and its memberships; its runs and events keep no link to it."""
    contact_id = find_contact(session, ref).id
    remove_contact(session, contact_id, now)
    return contact_id


def remove_contact(session: Session, contact_id: uuid.UUID, now: dt.datetime) -> None:
    """Delete the contact (NotFound if it is gone), its runs readied first (`release_runs_of`)
    and its emails' bodies dropped (none will be sent again).

    The contact is locked first, as ingestion and every step that writes a contact lock it
    before any step or run row: then the steps and runs. One order everywhere, so a deletion
    only ever waits for a transaction that holds none of what it holds (docs/durability.md).
    """
    if not contact_store.lock_for_deletion(session, contact_id):
        raise NotFound("Contact not found")
    release_runs_of(session, contact_id, now)
    outbox_store.forget_bodies_of_contact(session, contact_id)
    contact_store.delete_contact(session, contact_id, now)


def release_runs_of(session: Session, contact_id: uuid.UUID, now: dt.datetime) -> None:
    """Ready the contact's runs for its deletion (the contact locked), in the executor's lock
    order (step rows, then runs). Its runs that wait (a delay, an event) go on now: each then
    skips the rest of its steps, as after its contact is deleted, and ends, instead of waiting
    for a contact that will not come back (up to a wait's timeout, 30 days). Its runs are
    locked: the deletion waits for a step under way in one of them to commit."""
    run_store.wake_waits_of_contact(session, contact_id, now)
    contact_store.lock_runs_of(session, contact_id)


def list_contacts(
    session: Session,
    *,
    limit: int,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
    segment_id: uuid.UUID | None = None,
) -> Page[Contact]:
    """Contacts newest first, or the members of one segment."""
    if segment_id is not None:
        find_segment(session, segment_id)
    return contact_store.list_contacts(
        session, limit=limit, after=after, before=before, segment_id=segment_id
    )


def create_segment(session: Session, *, name: str, now: dt.datetime) -> Segment:
    return segment_store.create_segment(session, name=_check_name(name), now=now)


def _check_name(name: str) -> str:
    if not name.strip():
        raise InvalidInput("`name` must not be blank", field="name")
    check_text(name, "name")
    return name


def rename_segment(session: Session, segment_id: uuid.UUID, *, name: str) -> Segment:
    segment = find_segment(session, segment_id, lock="update")  # a deletion under way: gone
    segment_store.rename_segment(session, segment, _check_name(name))
    return segment


def delete_segment(session: Session, segment_id: uuid.UUID, *, now: dt.datetime) -> None:
    """Delete the segment; its contacts stay."""
    find_segment(session, segment_id, lock="update")
    segment_store.delete_segment(session, segment_id, now)


def list_segments(
    session: Session,
    *,
    limit: int,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
    contact_ref: str | None = None,
) -> Page[Segment]:
    """Segments newest first, or the segments one contact belongs to."""
    contact_id = find_contact(session, contact_ref).id if contact_ref is not None else None
    return segment_store.list_segments(
        session, limit=limit, after=after, before=before, contact_id=contact_id
    )


def add_to_segment(
    session: Session, contact_ref: str, segment_id: uuid.UUID, *, now: dt.datetime
) -> Contact:
    """Put the contact in the segment; adding a member again changes nothing. Both are held
    until the commit: one being deleted is waited for, then not found."""
    contact = find_contact(session, contact_ref, lock="key_share")
    find_segment(session, segment_id, lock="key_share")
    segment_store.add_membership(session, segment_id, contact.id, now)
    return contact


def remove_from_segment(session: Session, contact_ref: str, segment_id: uuid.UUID) -> Contact:
    """Take the contact out of the segment; 404 when it was not in it."""
    contact = find_contact(session, contact_ref)
    find_segment(session, segment_id)
    if not segment_store.remove_membership(session, segment_id, contact.id):
        raise NotFound("Contact is not in this segment")
    return contact
