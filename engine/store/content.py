"""Templates, sending domains and event definitions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.enums import DomainStatus, TemplateStatus
from models.tables import Domain, EventDefinition, Template


def find_template(
    session: Session, *, template_id: str | None, alias: str | None
) -> Template | None:
    if template_id is not None:
        try:
            key = uuid.UUID(template_id)
        except ValueError:
            return None
        return session.get(Template, key)
    return session.scalars(select(Template).where(Template.alias == alias)).first()


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
        id=uuid.uuid4(),
        name=name,
        alias=alias,
        status=status,
        subject=subject,
        sender=sender,
        reply_to=reply_to,
        html=html,
        text_body=text_body,
        variables=variables or [],
        published_at=now if status == TemplateStatus.PUBLISHED else None,
        created_at=now,
        updated_at=now,
    )
    session.add(template)
    session.flush()
    return template


def domain_status(session: Session, name: str) -> str | None:
    return session.scalar(select(Domain.status).where(Domain.name == name.lower()))


def create_domain(
    session: Session,
    *,
    name: str,
    now: dt.datetime,
    status: DomainStatus = DomainStatus.NOT_STARTED,
) -> Domain:
    domain = Domain(id=uuid.uuid4(), name=name.lower(), status=status, created_at=now)
    session.add(domain)
    session.flush()
    return domain


def event_schema(session: Session, name: str) -> dict[str, Any] | None:
    return session.scalar(select(EventDefinition.schema).where(EventDefinition.name == name))


def create_event_definition(
    session: Session, *, name: str, schema: dict[str, Any] | None, now: dt.datetime
) -> EventDefinition:
    definition = EventDefinition(
        id=uuid.uuid4(), name=name, schema=schema, created_at=now, updated_at=now
    )
    session.add(definition)
    session.flush()
    return definition
