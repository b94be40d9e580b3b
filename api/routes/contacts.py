"""Contacts, addressed by id or email: create, list, retrieve, update, delete."""

from __future__ import annotations

from fastapi import APIRouter

from api import serialize_resources as serialize
from api.deps import Authenticated, Rt
from api.schemas.contacts import (
    Contact,
    ContactDeleted,
    ContactList,
    ContactRef,
    CreateContact,
    UpdateContact,
)
from api.wire import PageQuery, StoredJson, UuidQuery, parse_id, stored_json
from engine import contacts
from engine.db import reads, transaction

router = APIRouter(tags=["contacts"])


@router.post("/contacts", status_code=201, summary="Create a contact")
def create(body: CreateContact, rt: Rt, _: Authenticated) -> ContactRef:
    """A new contact, optionally in segments; an email already in use is a 422."""
    with transaction(rt.sessions) as session:
        contact = contacts.create_contact(
            session,
            email=body.email,
            first_name=body.first_name,
            last_name=body.last_name,
            unsubscribed=body.unsubscribed,
            properties=body.properties,
            segment_refs=body.segment_ids(),
            now=rt.clock.now(),
            limits=rt.json_limits,
        )
    return ContactRef(id=str(contact.id))


@router.get("/contacts", summary="List contacts", response_model=ContactList)
def list_contacts(
    rt: Rt,
    _: Authenticated,
    cursor: PageQuery,
    segment_id: UuidQuery = None,
) -> StoredJson:
    """Newest first; `segment_id` keeps the members of one segment."""
    segment = parse_id(segment_id, "segment_id") if segment_id is not None else None
    with reads(rt.read_sessions) as session:
        page = contacts.list_contacts(
            session,
            limit=cursor.limit,
            after=cursor.after,
            before=cursor.before,
            segment_id=segment,
        )
    return StoredJson(serialize.contact_list(page))


@router.get(
    "/contacts/{contact_id}", summary="Retrieve a contact by id or email", response_model=Contact
)
def get(contact_id: str, rt: Rt, _: Authenticated) -> StoredJson:
    with reads(rt.read_sessions) as session:
        contact = contacts.find_contact(session, contact_id)
    return stored_json(serialize.contact(contact))


@router.patch("/contacts/{contact_id}", summary="Update a contact by id or email")
def update(contact_id: str, body: UpdateContact, rt: Rt, _: Authenticated) -> ContactRef:
    """Change the given fields; `properties` is merged key by key."""
    with transaction(rt.sessions) as session:
        contact = contacts.update_contact(
            session,
            contact_id,
            body.model_dump(exclude_unset=True),
            now=rt.clock.now(),
            limits=rt.json_limits,
        )
    return ContactRef(id=str(contact.id))


@router.delete("/contacts/{contact_id}", summary="Delete a contact by id or email")
def delete(contact_id: str, rt: Rt, _: Authenticated) -> ContactDeleted:
    """`contact` repeats the id: Resend's older answers carry it there."""
    with transaction(rt.sessions) as session:
        key = contacts.delete_contact(session, contact_id, now=rt.clock.now())
    return ContactDeleted(id=str(key), contact=str(key))
