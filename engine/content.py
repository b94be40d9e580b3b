"""Templates and sending domains: the rules behind their endpoints."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from engine.addresses import check_mailbox
from engine.errors import InvalidInput, NotFound
from engine.headers import check_header_text
from engine.json_limits import JsonLimits
from engine.store import content as content_store
from engine.store.paging import Page
from engine.stored_text import check_text
from engine.templates import UNSUBSCRIBE_VARIABLE
from models.enums import DomainStatus
from models.tables import Domain, Template

_FALLBACK_LIMITS = JsonLimits()
_VARIABLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# An alias addresses a template in a URL path, as a client writes it unquoted: no whitespace
# or control character, none of the characters that end or re-split a path (`/ ? # % \`),
# and not a dot segment (`.`, `..`), which clients remove.
_ALIAS = re.compile(r"(?!\.\.?$)[^\s\x00-\x1f\x7f/?#%\\]+")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)+(?!\d+$){_LABEL}")
_DNS_LABEL = re.compile(_LABEL)


def as_uuid(ref: str) -> uuid.UUID | None:
    """The reference as a UUID, or None when it is a name, alias or email instead."""
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def reject_nulls(changes: Mapping[str, Any], names: Iterable[str]) -> None:
    """Raise InvalidInput when one of these fields is present but null."""
    for name in names:
        if name in changes and changes[name] is None:
            raise InvalidInput(f"`{name}` must not be null", field=name)


def _fits(kind: str, value: Any) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _check_variables(variables: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Variable keys unique and well formed; each fallback of its declared type."""
    seen: set[str] = set()
    checked = []
    for index, variable in enumerate(variables):
        where, key, kind = f"variables[{index}]", variable["key"], variable["type"]
        if not _VARIABLE_KEY.fullmatch(key):
            raise InvalidInput(
                f"`{where}.key` {key!r} must be letters, digits and underscores"
                " and not start with a digit",
                field=f"{where}.key",
            )
        if key == UNSUBSCRIBE_VARIABLE:
            raise InvalidInput(
                f"`{where}.key`: `{key}` is reserved: the send fills it with the contact's"
                " unsubscribe link",
                field=f"{where}.key",
            )
        if key in seen:
            raise InvalidInput(f"`{where}.key`: `{key}` is declared twice", field=f"{where}.key")
        seen.add(key)
        fallback = variable.get("fallback_value")
        if fallback is not None and not _fits(kind, fallback):
            raise InvalidInput(
                f"`{where}.fallback_value` must be a {kind} like the variable `{key}`,"
                f" got {type(fallback).__name__}",
                field=f"{where}.fallback_value",
            )
        # Free text, unlike the fields the API types: a NUL or a lone surrogate cannot be stored.
        _FALLBACK_LIMITS.check(fallback, field=f"{where}.fallback_value")
        checked.append({"key": key, "type": kind, "fallback_value": fallback})
    return checked


def _template_columns(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The given template fields checked and shaped as columns."""
    columns = dict(fields)
    reject_nulls(columns, ("name", "html"))
    if columns.get("name") is not None and not columns["name"].strip():
        raise InvalidInput("`name` must not be blank", field="name")
    for name, field in (("name", "name"), ("html", "html"), ("text_body", "text")):
        check_text(columns.get(name), field)
    alias = columns.get("alias")
    if alias is not None and as_uuid(alias) is not None:
        # /templates/{ref} reads a UUID as an id first: another template's id as an alias
        # would make the path and a step's {"alias": ...} name two different templates.
        raise InvalidInput(
            "`alias` must not be a UUID: a UUID addresses a template by its id", field="alias"
        )
    if alias is not None and not _ALIAS.fullmatch(alias):
        raise InvalidInput(
            "`alias` must not contain whitespace, control characters or any of `/ ? # % \\`,"
            " nor be `.` or `..`: it addresses the template in a URL path",
            field="alias",
        )
    if columns.get("sender") is not None:
        check_mailbox(columns["sender"], field="from")
    if columns.get("subject") is not None:
        check_header_text(columns["subject"], "subject")
    if "reply_to" in columns:
        reply_to = columns["reply_to"]
        reply_to = [reply_to] if isinstance(reply_to, str) else reply_to
        for index, address in enumerate(reply_to or []):
            check_mailbox(address, field=f"reply_to[{index}]")
        columns["reply_to"] = reply_to
    if "variables" in columns:
        columns["variables"] = _check_variables(columns["variables"] or [])
    return columns


def _alias_taken(alias: str | None) -> InvalidInput:
    return InvalidInput(f"A template with the alias `{alias}` already exists.", field="alias")


def find_template(session: Session, ref: str) -> Template:
    """The template named by its id or its alias."""
    key = as_uuid(ref)
    template = content_store.get_template(session, key) if key is not None else None
    if template is None:
        check_text(ref, "template_id")
        template = content_store.get_template_by_alias(session, ref)
    if template is None:
        raise NotFound("Template not found")
    return template


def create_template(session: Session, fields: Mapping[str, Any], *, now: dt.datetime) -> Template:
    """A new draft template; the alias, when given, must be free."""
    columns = _template_columns(fields)
    template = content_store.unique_write(
        session, lambda: content_store.create_template(session, now=now, **columns)
    )
    if template is None:
        raise _alias_taken(columns.get("alias"))
    return template


def update_template(
    session: Session, ref: str, changes: Mapping[str, Any], *, now: dt.datetime
) -> Template:
    """Change the given fields of the draft. Sends keep the published version until the next
    publish; a change of content marks the template as having an unpublished version."""
    template = content_store.lock_template(session, find_template(session, ref))
    columns = {**_template_columns(changes), "updated_at": now}
    if columns.keys() & set(content_store.VERSIONED):
        columns["has_unpublished_versions"] = True
    saved = content_store.unique_write(
        session, lambda: content_store.update_fields(session, template, columns)
    )
    if saved is None:
        raise _alias_taken(columns.get("alias"))
    return saved


def publish_template(session: Session, ref: str, *, now: dt.datetime) -> Template:
    """Copy the draft into a new version, which send_email steps use from now on. A template
    published without a change since is left as it is, so that a retried publish is a no-op."""
    template = content_store.lock_template(session, find_template(session, ref))
    if template.current_version_id is not None and not template.has_unpublished_versions:
        return template
    return content_store.publish_draft(session, template, now=now)


def duplicate_template(session: Session, ref: str, *, now: dt.datetime) -> Template:
    """A draft copy without the alias (aliases are unique)."""
    original = find_template(session, ref)
    return content_store.create_template(
        session,
        name=f"{original.name} (copy)"[:255],
        now=now,
        subject=original.subject,
        sender=original.sender,
        reply_to=list(original.reply_to) if original.reply_to is not None else None,
        html=original.html,
        text_body=original.text_body,
        variables=[dict(variable) for variable in original.variables],
    )


def delete_template(session: Session, ref: str, *, now: dt.datetime) -> uuid.UUID:
    template = find_template(session, ref)
    content_store.delete_row(session, template, now)
    return template.id


def _check_label(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    label = value.lower()
    if not _DNS_LABEL.fullmatch(label):
        raise InvalidInput(
            f"`{field}` must be one DNS label: letters, digits and inner hyphens",
            field=field,
        )
    return label


def _domain_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(settings)
    reject_nulls(values, ("open_tracking", "click_tracking", "tls", "custom_return_path"))
    for name in ("custom_return_path", "tracking_subdomain"):
        if name in values:
            values[name] = _check_label(values[name], name)
    return values


def find_domain(session: Session, domain_id: uuid.UUID) -> Domain:
    domain = content_store.get_domain(session, domain_id)
    if domain is None:
        raise NotFound("Domain not found")
    return domain


def find_domain_by_ref(session: Session, ref: str) -> Domain:
    """A domain by id, or by name (`example.com`)."""
    key = as_uuid(ref)
    if key is not None:
        return find_domain(session, key)
    domain = content_store.get_domain_by_name(session, ref.strip().lower().removesuffix("."))
    if domain is None:
        raise NotFound(f"Domain `{ref}` not found")
    return domain


def create_domain(
    session: Session, *, name: str, settings: Mapping[str, Any], now: dt.datetime
) -> Domain:
    """A new domain, `not_started`: no DNS is looked up, an operator verifies it."""
    host = name.strip().lower().removesuffix(".")
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise InvalidInput(f"`name` {name!r} is not a domain name like example.com", field="name")
    values = _domain_settings(settings)

    def write() -> Domain:
        domain = content_store.create_domain(session, name=host, now=now)
        return content_store.update_fields(session, domain, values)

    domain = content_store.unique_write(session, write)
    if domain is None:
        raise InvalidInput(f"The domain `{host}` already exists.", field="name")
    return domain


def update_domain(session: Session, domain_id: uuid.UUID, changes: Mapping[str, Any]) -> Domain:
    """Change tracking and TLS settings; the name and region are fixed."""
    domain = find_domain(session, domain_id)
    values = _domain_settings(changes)
    given_id = values.pop("id", None)
    if given_id is not None and as_uuid(given_id) != domain.id:
        raise InvalidInput("`id` does not match the domain in the path.", field="id")
    return content_store.update_fields(session, domain, values)


def verify_domain(session: Session, domain_id: uuid.UUID) -> Domain:
    """Mark the domain verified: here verification is the operator's word, not a DNS check."""
    domain = find_domain(session, domain_id)
    return content_store.update_fields(session, domain, {"status": DomainStatus.VERIFIED})


def delete_domain(session: Session, domain_id: uuid.UUID, *, now: dt.datetime) -> None:
    content_store.delete_row(session, find_domain(session, domain_id), now)


def list_templates(
    session: Session, *, limit: int, after: uuid.UUID | None, before: uuid.UUID | None
) -> Page[Template]:
    """Templates, newest first."""
    return content_store.list_templates(session, limit=limit, after=after, before=before)


def list_domains(
    session: Session, *, limit: int, after: uuid.UUID | None, before: uuid.UUID | None
) -> Page[Domain]:
    """Domains, newest first."""
    return content_store.list_domains(session, limit=limit, after=after, before=before)
