"""Contacts, segments, templates, domains and event definitions as Resend's JSON objects."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from api.schemas.contacts import Contact
from api.schemas.domains import SENDING_ONLY, Domain, DomainItem
from api.schemas.events import EventDefinition, EventDefinitionItem
from api.schemas.segments import Membership, MembershipRemoved, Segment, SegmentItem
from api.schemas.shapes import ListOf
from api.schemas.templates import Template, TemplateItem, TemplateVariable
from api.wire import list_body, wire_time
from engine.store.paging import Page
from models import tables
from models.enums import DomainStatus, TemplateStatus

Row = TypeVar("Row")
Item = TypeVar("Item")
Envelope = TypeVar("Envelope", bound=ListOf[Any])


def page_body(envelope: type[Envelope], page: Page[Row], item: Callable[[Row], Item]) -> Envelope:
    """A list envelope of one page, each item serialised by `item`."""
    return envelope(has_more=page.has_more, data=[item(row) for row in page.items])


def _contact_fields(row: tables.Contact) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "email": row.email,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "created_at": wire_time(row.created_at),
        "unsubscribed": row.unsubscribed,
        "properties": dict(row.properties or {}),
    }


def contact(row: tables.Contact) -> Contact:
    return Contact(**_contact_fields(row))


def contact_list(page: Page[tables.Contact]) -> dict[str, Any]:
    """A page of contacts as ContactList's JSON, each item a plain dict: a ContactItem per
    row, taken apart again by stored_json, took a quarter of a page of 100's busy time."""
    return list_body([_contact_fields(row) for row in page.items], page.has_more)


def segment(row: tables.Segment) -> Segment:
    return Segment(id=str(row.id), name=row.name, created_at=wire_time(row.created_at))


def segment_item(row: tables.Segment) -> SegmentItem:
    return SegmentItem(id=str(row.id), name=row.name, created_at=wire_time(row.created_at))


def membership(contact_row: tables.Contact, segment_id: str) -> Membership:
    """The SDK reads `id` (the segment's); Resend's docs name both ids."""
    return Membership(id=segment_id, contact_id=str(contact_row.id), segment_id=segment_id)


def membership_removed(contact_row: tables.Contact, segment_id: str) -> MembershipRemoved:
    return MembershipRemoved(id=segment_id, contact_id=str(contact_row.id), segment_id=segment_id)


def template(row: tables.Template) -> Template:
    return Template(
        id=str(row.id),
        name=row.name,
        alias=row.alias,
        status=TemplateStatus(row.status),
        sender=row.sender,
        subject=row.subject,
        reply_to=row.reply_to,
        html=row.html,
        text_body=row.text_body,
        variables=_variables(row.variables),
        created_at=wire_time(row.created_at),
        updated_at=wire_time(row.updated_at),
        published_at=wire_time(row.published_at),
        current_version_id=str(row.current_version_id) if row.current_version_id else None,
        has_unpublished_versions=row.has_unpublished_versions,
    )


def _variables(variables: Iterable[dict[str, Any]] | None) -> list[TemplateVariable]:
    return [
        TemplateVariable(key=v["key"], type=v["type"], fallback_value=v.get("fallback_value"))
        for v in variables or []
    ]


def template_item(row: tables.Template) -> TemplateItem:
    """The subset of a template that Resend's list answers carry."""
    return TemplateItem(
        id=str(row.id),
        name=row.name,
        alias=row.alias,
        status=TemplateStatus(row.status),
        published_at=wire_time(row.published_at),
        created_at=wire_time(row.created_at),
        updated_at=wire_time(row.updated_at),
    )


def _domain_fields(row: tables.Domain) -> dict[str, Any]:
    # No DNS is looked up here (an operator verifies a domain), so there are no records to show.
    return {
        "id": str(row.id),
        "name": row.name,
        "status": DomainStatus(row.status),
        "created_at": wire_time(row.created_at),
        "region": row.region,
        "records": [],
        "open_tracking": row.open_tracking,
        "click_tracking": row.click_tracking,
        "tls": row.tls,
        "custom_return_path": row.custom_return_path,
        "tracking_subdomain": row.tracking_subdomain,
        "capabilities": SENDING_ONLY,
    }


def domain(row: tables.Domain) -> Domain:
    return Domain(**_domain_fields(row))


def domain_item(row: tables.Domain) -> DomainItem:
    return DomainItem(**_domain_fields(row))


def _event_definition_fields(row: tables.EventDefinition) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "name": row.name,
        "event_schema": row.schema,
        "created_at": wire_time(row.created_at),
        "updated_at": wire_time(row.updated_at),
    }


def event_definition(row: tables.EventDefinition) -> EventDefinition:
    return EventDefinition(**_event_definition_fields(row))


def event_definition_item(row: tables.EventDefinition) -> EventDefinitionItem:
    return EventDefinitionItem(**_event_definition_fields(row))
