"""Plain factory functions for integration tests."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from engine.db import transaction
from engine.lifecycle import create_automation
from engine.store import contacts as contact_store
from engine.store import content as content_store
from models.enums import DomainStatus, TemplateStatus
from tests.integration.harness import Stack


def unique_email(prefix: str = "contact") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.test"


def make_template(
    stack: Stack,
    *,
    status: TemplateStatus = TemplateStatus.PUBLISHED,
    subject: str | None = "Welcome, {{{FIRST_NAME}}}!",
    sender: str | None = "Acme <hello@acme.test>",
    html: str = "<p>Hi {{{FIRST_NAME}}}, your plan is {{{PLAN}}}.</p>"
    '<a href="{{{RESEND_UNSUBSCRIBE_URL}}}">unsubscribe</a>',
    alias: str | None = None,
) -> str:
    with transaction(stack.runtime.sessions) as session:
        template = content_store.create_template(
            session,
            name="welcome",
            now=stack.clock.now(),
            status=status,
            alias=alias,
            subject=subject,
            sender=sender,
            html=html,
            text_body="Hi {{{FIRST_NAME}}}, plan {{{PLAN}}}.",
            variables=[
                {"key": "FIRST_NAME", "type": "string", "fallback_value": "there"},
                {"key": "PLAN", "type": "string", "fallback_value": "free"},
            ],
        )
        return str(template.id)


def make_domain(stack: Stack, name: str = "acme.test", *, verified: bool = True) -> None:
    status = DomainStatus.VERIFIED if verified else DomainStatus.PENDING
    with transaction(stack.runtime.sessions) as session:
        content_store.create_domain(session, name=name, now=stack.clock.now(), status=status)


def make_contact(stack: Stack, email: str, **fields: Any) -> uuid.UUID:
    with transaction(stack.runtime.sessions) as session:
        contact = contact_store.create_contact(
            session, email=email, now=stack.clock.now(), **fields
        )
        return contact.id


def make_automation(
    stack: Stack,
    steps: list[dict[str, Any]],
    connections: list[dict[str, Any]],
    *,
    status: str = "enabled",
) -> uuid.UUID:
    with transaction(stack.runtime.sessions) as session:
        automation = create_automation(
            session,
            name="test automation",
            steps=steps,
            connections=connections,
            status=status,
            now=stack.clock.now(),
        )
        return automation.id


def send_email_step(key: str, template_id: str, **config: Any) -> dict[str, Any]:
    template: dict[str, Any] = {
        "id": template_id,
        "variables": {
            "FIRST_NAME": {"var": "contact.first_name"},
            "PLAN": {"var": "event.plan"},
        },
    }
    return {"key": key, "type": "send_email", "config": {"template": template, **config}}


def chain(*keys: str) -> list[dict[str, Any]]:
    """Default connections linking the keys in order."""
    return [{"from": a, "to": b} for a, b in itertools.pairwise(keys)]
