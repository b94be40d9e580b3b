"""Segments, and which contacts are in them."""

from __future__ import annotations

from fastapi import APIRouter

from api import serialize_resources as serialize
from api.deps import Authenticated, Rt
from api.schemas.contacts import ContactList
from api.schemas.segments import (
    CreateSegment,
    Membership,
    MembershipRemoved,
    Segment,
    SegmentCreated,
    SegmentDeleted,
    SegmentList,
    SegmentRef,
    UpdateSegment,
)
from api.wire import PageQuery, StoredJson, UuidPath, parse_id
from engine import contacts
from engine.db import reads, transaction

router = APIRouter(tags=["segments"])

ID = "segment_id"


@router.post("/segments", status_code=201, summary="Create a segment")
def create(body: CreateSegment, rt: Rt, _: Authenticated) -> SegmentCreated:
    with transaction(rt.sessions) as session:
        segment = contacts.create_segment(session, name=body.name, now=rt.clock.now())
    return SegmentCreated(id=str(segment.id), name=segment.name)


@router.get("/segments", summary="List segments")
def list_segments(
    rt: Rt,
    _: Authenticated,
    cursor: PageQuery,
) -> SegmentList:
    with reads(rt.read_sessions) as session:
        page = contacts.list_segments(
            session, limit=cursor.limit, after=cursor.after, before=cursor.before
        )
    return serialize.page_body(SegmentList, page, serialize.segment_item)


@router.get("/segments/{segment_id}", summary="Retrieve a segment")
def get(segment_id: UuidPath, rt: Rt, _: Authenticated) -> Segment:
    key = parse_id(segment_id, ID)
    with reads(rt.read_sessions) as session:
        segment = contacts.find_segment(session, key)
    return serialize.segment(segment)


@router.patch("/segments/{segment_id}", summary="Rename a segment")
def update(segment_id: UuidPath, body: UpdateSegment, rt: Rt, _: Authenticated) -> SegmentRef:
    key = parse_id(segment_id, ID)
    with transaction(rt.sessions) as session:
        contacts.rename_segment(session, key, name=body.name)
    return SegmentRef(id=str(key))


@router.delete("/segments/{segment_id}", summary="Delete a segment")
def delete(segment_id: UuidPath, rt: Rt, _: Authenticated) -> SegmentDeleted:
    """Its contacts stay; only their memberships go."""
    key = parse_id(segment_id, ID)
    with transaction(rt.sessions) as session:
        contacts.delete_segment(session, key, now=rt.clock.now())
    return SegmentDeleted(id=str(key))


@router.get(
    "/segments/{segment_id}/contacts",
    summary="List a segment's contacts",
    response_model=ContactList,
)
def list_members(
    segment_id: UuidPath,
    rt: Rt,
    _: Authenticated,
    cursor: PageQuery,
) -> StoredJson:
    key = parse_id(segment_id, ID)
    with reads(rt.read_sessions) as session:
        page = contacts.list_contacts(
            session, limit=cursor.limit, after=cursor.after, before=cursor.before, segment_id=key
        )
    return StoredJson(serialize.contact_list(page))


@router.get("/contacts/{contact_id}/segments", summary="List a contact's segments")
def list_contact_segments(
    contact_id: str,
    rt: Rt,
    _: Authenticated,
    cursor: PageQuery,
) -> SegmentList:
    """The contact is named by id or email."""
    with reads(rt.read_sessions) as session:
        page = contacts.list_segments(
            session,
            limit=cursor.limit,
            after=cursor.after,
            before=cursor.before,
            contact_ref=contact_id,
        )
    return serialize.page_body(SegmentList, page, serialize.segment_item)


@router.post("/contacts/{contact_id}/segments/{segment_id}", summary="Add a contact to a segment")
def add_member(contact_id: str, segment_id: UuidPath, rt: Rt, _: Authenticated) -> Membership:
    """Adding a member again answers the same; the path decides (the SDK repeats it in a body)."""
    key = parse_id(segment_id, ID)
    with transaction(rt.sessions) as session:
        contact = contacts.add_to_segment(session, contact_id, key, now=rt.clock.now())
    return serialize.membership(contact, str(key))


@router.delete(
    "/contacts/{contact_id}/segments/{segment_id}", summary="Remove a contact from a segment"
)
def remove_member(
    contact_id: str, segment_id: UuidPath, rt: Rt, _: Authenticated
) -> MembershipRemoved:
    key = parse_id(segment_id, ID)
    with transaction(rt.sessions) as session:
        contact = contacts.remove_from_segment(session, contact_id, key)
    return serialize.membership_removed(contact, str(key))
