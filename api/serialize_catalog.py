"""Contacts, segments, templates, domains and event definitions as Resend's wire objects."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from api.wire import list_body, wire_time
from engine.store.paging import Page
from models.tables import Contact, Domain, EventDefinition, Segment, Template

T = TypeVar("T")


def page_body(page: Page[T], item: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    """A list envelope of one page, each item serialised by `item`."""
    return list_body([item(row) for row in page.items], page.has_more)


def _without_object(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "object"}


def contact(row: Contact) -> dict[str, Any]:
    return {
        "object": "contact",
        "id": str(row.id),
        "email": row.email,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "created_at": wire_time(row.created_at),
        "unsubscribed": row.unsubscribed,
        "properties": dict(row.properties or {}),
    }


def contact_item(row: Contact) -> dict[str, Any]:
    return _without_object(contact(row))


def segment(row: Segment) -> dict[str, Any]:
    return {
        "object": "segment",
        "id": str(row.id),
        "name": row.name,
        "created_at": wire_time(row.created_at),
    }


def segment_item(row: Segment) -> dict[str, Any]:
    return _without_object(segment(row))


def membership(contact_row: Contact, segment_id: str, **extra: Any) -> dict[str, Any]:
    """The SDK reads `id` (the segment's); Resend's docs name both ids."""
    return {
        "object": "contact_segment",
        "id": segment_id,
        "contact_id": str(contact_row.id),
        "segment_id": segment_id,
        **extra,
    }


def template(row: Template) -> dict[str, Any]:
    return {
        "object": "template",
        "id": str(row.id),
        "name": row.name,
        "alias": row.alias,
        "status": row.status,
        "from": row.sender,
        "subject": row.subject,
        "reply_to": row.reply_to,
        "html": row.html,
        "text": row.text_body,
        "variables": _variables(row.variables),
        "created_at": wire_time(row.created_at),
        "updated_at": wire_time(row.updated_at),
        "published_at": wire_time(row.published_at),
    }


def _variables(variables: Iterable[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        {"key": v["key"], "type": v["type"], "fallback_value": v.get("fallback_value")}
        for v in variables or []
    ]


def template_item(row: Template) -> dict[str, Any]:
    """The subset of a template that Resend's list answers carry."""
    return {
        "id": str(row.id),
        "name": row.name,
        "alias": row.alias,
        "status": row.status,
        "published_at": wire_time(row.published_at),
        "created_at": wire_time(row.created_at),
        "updated_at": wire_time(row.updated_at),
    }


def domain(row: Domain) -> dict[str, Any]:
    # No DNS is looked up here (an operator verifies a domain), so there are no records to show.
    return {
        "object": "domain",
        "id": str(row.id),
        "name": row.name,
        "status": row.status,
        "created_at": wire_time(row.created_at),
        "region": row.region,
        "records": [],
        "open_tracking": row.open_tracking,
        "click_tracking": row.click_tracking,
        "tls": row.tls,
        "custom_return_path": row.custom_return_path,
        "tracking_subdomain": row.tracking_subdomain,
    }


def domain_item(row: Domain) -> dict[str, Any]:
    return _without_object(domain(row))


def event_definition(row: EventDefinition) -> dict[str, Any]:
    return {
        "object": "event",
        "id": str(row.id),
        "name": row.name,
        "schema": row.schema,
        "created_at": wire_time(row.created_at),
        "updated_at": wire_time(row.updated_at),
    }


def event_definition_item(row: EventDefinition) -> dict[str, Any]:
    return _without_object(event_definition(row))


def deleted(kind: str, ident: object, **extra: Any) -> dict[str, Any]:
    """Resend's answer to a delete: `{object, id, deleted: true}`."""
    return {"object": kind, "id": str(ident), **extra, "deleted": True}


def created(kind: str, ident: object, **extra: Any) -> dict[str, Any]:
    """Resend's answer to a create or an update: `{object, id}`."""
    return {"object": kind, "id": str(ident), **extra}
