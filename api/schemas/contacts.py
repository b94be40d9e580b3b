"""Bodies and answers of the contact endpoints, in Resend's field names."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from api.schemas.shapes import Answer, Body, Id, ListOf, Timestamp

# Flat scalars, as in Resend; the engine checks keys and values so its message names the key.
Properties = dict[str, Any]


class SegmentId(Body):
    """A segment to put a new contact in."""

    id: str = Field(min_length=1, max_length=36)


# Resend's spec types a segment as its id, its SDK as `{"id": ...}`: either is taken.
SegmentRef = SegmentId | Annotated[str, Field(min_length=1, max_length=36)]


class CreateContact(Body):
    email: str = Field(min_length=3, max_length=320, json_schema_extra={"format": "email"})
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    unsubscribed: bool = False
    properties: Properties | None = Field(default=None, max_length=100)
    segments: list[SegmentRef] | None = Field(default=None, max_length=100)

    def segment_ids(self) -> list[str]:
        return [ref if isinstance(ref, str) else ref.id for ref in self.segments or []]


class UpdateContact(Body):
    # The SDK sends the identifier it addressed the contact by; it must name the same contact.
    id: str | None = Field(default=None, max_length=36)
    email: str | None = Field(default=None, max_length=320)
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    unsubscribed: bool | None = None
    properties: Properties | None = Field(default=None, max_length=100)


class ContactRef(Answer):
    """The answer to a create or an update."""

    object: Literal["contact"] = "contact"
    id: Id


class ContactDeleted(Answer):
    """`contact` repeats the id: Resend's older answers carry it there."""

    object: Literal["contact"] = "contact"
    id: Id
    contact: Id
    deleted: Literal[True] = True


class ContactItem(Answer):
    """A contact as a list shows it."""

    id: Id
    email: str
    first_name: str | None
    last_name: str | None
    created_at: Timestamp
    unsubscribed: bool
    properties: Properties


class ContactList(ListOf[ContactItem]):
    pass


class _ContactObject(Answer):
    # A base listed last puts its field first: `object` leads, as Resend writes it.
    object: Literal["contact"] = "contact"


class Contact(ContactItem, _ContactObject):
    pass
