"""Templates, sending domains and event definitions."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.store.core import DOMAINS, TEMPLATE_VERSIONS, execute
from engine.store.paging import Page, paginate, remember_gone
from models.enums import DomainStatus, TemplateStatus
from models.ids import new_id
from models.tables import Base, Domain, EventDefinition, Template, TemplateVersion

T = TypeVar("T")
R = TypeVar("R", bound=Base)


# The content a publish copies from the draft into a version.
VERSIONED = ("subject", "sender", "reply_to", "html", "text_body", "variables")


def create_template(
    session: Session,
    *,
    name: str,
    now: dt.datetime,
    status: TemplateStatus = TemplateStatus.DRAFT,
    alias: str | None = None,
    subject: str | None = None,
    sender: str | None = None,
    reply_to: list[str] | None = None,
    html: str | None = None,
    text_body: str | None = None,
    variables: list[dict[str, Any]] | None = None,
) -> Template:
    template = Template(
        id=new_id(),
        name=name,
        alias=alias,
        status=status,
        subject=subject,
        sender=sender,
        reply_to=reply_to,
        html=html,
        text_body=text_body,
        variables=variables or [],
        created_at=now,
        updated_at=now,
        has_unpublished_versions=True,
    )
    session.add(template)
    session.flush()
    if status == TemplateStatus.PUBLISHED:
        publish_draft(session, template, now=now)
    return template


_LAST_NUMBER = select(func.max(TEMPLATE_VERSIONS.c.number)).where(
    TEMPLATE_VERSIONS.c.template_id == bindparam("template_id")
)


def lock_template(session: Session, template: Template) -> Template:
    """The template's row locked against other publishes and updates, read afresh."""
    locked = session.scalars(
        select(Template)
        .where(Template.id == template.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return locked


def publish_draft(session: Session, template: Template, *, now: dt.datetime) -> Template:
    """Copy the (locked) template's draft into its next version, which sends use from now on."""
    last = execute(session, _LAST_NUMBER, {"template_id": template.id}).scalar()
    version = TemplateVersion(
        id=new_id(),
        template_id=template.id,
        number=(last or 0) + 1,
        created_at=now,
        **{name: getattr(template, name) for name in VERSIONED},
    )
    session.add(version)
    session.flush()
    return update_fields(
        session,
        template,
        {
            "status": TemplateStatus.PUBLISHED,
            "current_version_id": version.id,
            "has_unpublished_versions": False,
            "published_at": now,
            "updated_at": now,
        },
    )


def get_version(session: Session, version_id: uuid.UUID) -> TemplateVersion | None:
    return session.get(TemplateVersion, version_id)


_DOMAIN_STATUS = select(DOMAINS.c.status).where(DOMAINS.c.name == bindparam("name"))


def domain_status(session: Session, name: str) -> str | None:
    status: str | None = execute(session, _DOMAIN_STATUS, {"name": name.lower()}).scalar()
    return status


def create_domain(
    session: Session,
    *,
    name: str,
    now: dt.datetime,
    status: DomainStatus = DomainStatus.NOT_STARTED,
) -> Domain:
    domain = Domain(id=new_id(), name=name.lower(), status=status, created_at=now)
    session.add(domain)
    session.flush()
    return domain


def create_event_definition(
    session: Session, *, name: str, schema: dict[str, Any] | None, now: dt.datetime
) -> EventDefinition:
    definition = EventDefinition(
        id=new_id(), name=name, schema=schema, created_at=now, updated_at=now
    )
    session.add(definition)
    session.flush()
    return definition


def unique_write(session: Session, write: Callable[[], T]) -> T | None:
    """Run `write` (which flushes) in a savepoint; None when it broke a unique constraint."""
    try:
        with session.begin_nested():
            return write()
    except IntegrityError:
        return None


def update_fields(session: Session, row: R, changes: Mapping[str, Any]) -> R:
    """Set the row's columns from `changes` and flush, so that a constraint fails here."""
    for name, value in changes.items():
        setattr(row, name, value)
    session.flush()
    return row


def delete_row(
    session: Session, row: Template | Domain | EventDefinition, now: dt.datetime
) -> None:
    """Delete the row; its place in its list is kept for page cursors (remember_gone)."""
    position = (row.id, row.created_at)
    session.delete(row)
    session.flush()
    remember_gone(session, row.__tablename__, [position], now)


def get_template(session: Session, template_id: uuid.UUID) -> Template | None:
    return session.get(Template, template_id)


def get_template_by_alias(session: Session, alias: str) -> Template | None:
    return session.scalars(select(Template).where(Template.alias == alias)).first()


def list_templates(
    session: Session, *, limit: int, after: uuid.UUID | None, before: uuid.UUID | None
) -> Page[Template]:
    return paginate(
        session,
        select(Template),
        created=Template.created_at,
        ident=Template.id,
        limit=limit,
        after=after,
        before=before,
    )


def get_domain(session: Session, domain_id: uuid.UUID) -> Domain | None:
    return session.get(Domain, domain_id)


def get_domain_by_name(session: Session, name: str) -> Domain | None:
    return session.scalars(select(Domain).where(Domain.name == name)).first()


def list_domains(
    session: Session, *, limit: int, after: uuid.UUID | None, before: uuid.UUID | None
) -> Page[Domain]:
    return paginate(
        session,
        select(Domain),
        created=Domain.created_at,
        ident=Domain.id,
        limit=limit,
        after=after,
        before=before,
    )


def get_event_definition(session: Session, definition_id: uuid.UUID) -> EventDefinition | None:
    return session.get(EventDefinition, definition_id)


def get_event_definition_by_name(session: Session, name: str) -> EventDefinition | None:
    return session.scalars(select(EventDefinition).where(EventDefinition.name == name)).first()


def list_event_definitions(
    session: Session, *, limit: int, after: uuid.UUID | None, before: uuid.UUID | None
) -> Page[EventDefinition]:
    return paginate(
        session,
        select(EventDefinition),
        created=EventDefinition.created_at,
        ident=EventDefinition.id,
        limit=limit,
        after=after,
        before=before,
    )
