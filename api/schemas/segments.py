"""Bodies and answers of the segment endpoints and of a contact's memberships."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.shapes import Answer, Body, Id, ListOf, Timestamp


class CreateSegment(Body):
    name: str = Field(min_length=1, max_length=255)


class UpdateSegment(Body):
    name: str = Field(min_length=1, max_length=255)


class SegmentRef(Answer):
    """The answer to a rename."""

    object: Literal["segment"] = "segment"
    id: Id


class SegmentCreated(SegmentRef):
    name: str


class SegmentDeleted(SegmentRef):
    deleted: Literal[True] = True


class SegmentItem(Answer):
    """A segment as a list shows it."""

    id: Id
    name: str
    created_at: Timestamp


class SegmentList(ListOf[SegmentItem]):
    pass


class _SegmentObject(Answer):
    # A base listed last puts its field first: `object` leads, as Resend writes it.
    object: Literal["segment"] = "segment"


class Segment(SegmentItem, _SegmentObject):
    pass


class Membership(Answer):
    """A contact in a segment; the SDK reads `id` (the segment's), Resend's docs name both ids."""

    object: Literal["contact_segment"] = "contact_segment"
    id: Id
    contact_id: Id
    segment_id: Id


class MembershipRemoved(Membership):
    deleted: Literal[True] = True
