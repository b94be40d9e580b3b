"""send_email: check, render and write the outbox row (claim transaction), then send."""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Row

from engine.errors import StepFailure
from engine.failures import classify
from engine.mail import OutgoingEmail
from engine.outcomes import Completed, Failed, Outcome, Skipped
from engine.runtime import Runtime
from engine.steps.context import StepRun
from engine.store import content as content_store
from engine.store import outbox as outbox_store
from engine.templates import placeholder_names, render
from engine.unsubscribe import unsubscribe_url
from engine.variables import MissingField, resolve_path, resolve_variables
from models.enums import DomainStatus, OutboxStatus, SkipReason, TemplateStatus

log = logging.getLogger(__name__)

_CONTEXT_ROOTS = ("event.", "contact.", "wait_events.")


@dataclass(frozen=True)
class PreparedEmail:
    message: OutgoingEmail
    output: dict[str, Any]


def email_output(row: Row[Any]) -> dict[str, Any]:
    """The step output API.md specifies: to, email_id, template id and variables."""
    return {
        "to": row.to_address,
        "email_id": str(row.id),
        "template": {
            "id": str(row.template_id) if row.template_id else None,
            "variables": row.variables,
        },
    }


def prepare_email(sr: StepRun) -> Outcome | PreparedEmail:
    """Everything up to the transport, inside the claim transaction."""
    contact = sr.run.contact
    assert contact is not None
    if contact.unsubscribed:
        return Skipped(SkipReason.UNSUBSCRIBED, output={"to": contact.email})
    sent = outbox_store.get_outbox(sr.session, sr.claimed.run_id, sr.step.key)
    if sent is not None and sent.status == OutboxStatus.SENT:
        return Completed(output=email_output(sent))  # sent before a crash; never send twice
    try:
        return _render_and_write(sr, contact.email, contact.id)
    except StepFailure as failure:
        return Failed(failure.message, failure.code)


def _template(sr: StepRun) -> Row[Any]:
    ref = sr.step.config["template"]
    template = content_store.find_template(
        sr.session, template_id=ref.get("id"), alias=ref.get("alias")
    )
    if template is None:
        raise StepFailure(
            f"Template `{ref.get('id') or ref.get('alias')}` not found", code="template_not_found"
        )
    if template.status != TemplateStatus.PUBLISHED:
        raise StepFailure(
            f"Template `{template.alias or template.id}` is not published",
            code="template_not_published",
        )
    return template


def _sender(sr: StepRun, template: Row[Any]) -> str:
    sender = sr.step.config.get("from") or template.sender
    if not sender:
        raise StepFailure(
            "No sender: set `from` on the step or on the template", code="missing_sender"
        )
    domain = parseaddr(sender)[1].rpartition("@")[2].lower()
    if content_store.domain_status(sr.session, domain) != DomainStatus.VERIFIED:
        raise StepFailure(f"Sender domain `{domain}` is not verified", code="domain_not_verified")
    return str(sender)


def _render_and_write(sr: StepRun, to: str, contact_id: uuid.UUID) -> PreparedEmail:
    config = sr.step.config
    template = _template(sr)
    sender = _sender(sr, template)
    subject_source = config.get("subject") or template.subject
    if not subject_source:
        raise StepFailure(
            "No subject: set `subject` on the step or on the template", code="missing_subject"
        )
    context = sr.variables()
    fallbacks = {
        v["key"]: v["fallback_value"]
        for v in template.variables
        if v.get("fallback_value") is not None
    }
    resolved = resolve_variables(config["template"].get("variables", {}), context, fallbacks)
    # A field that exists but is empty (a contact without a first name) takes the fallback too.
    given = {k: fallbacks[k] if v is None and k in fallbacks else v for k, v in resolved.items()}
    values = {**fallbacks, **given}
    sources = (subject_source, template.html or "", template.text_body or "")
    for name in set().union(*(placeholder_names(text) for text in sources)):
        if name not in values and name.startswith(_CONTEXT_ROOTS):
            # A missing one is reported by render() unless the placeholder has a fallback.
            with contextlib.suppress(MissingField):
                values[name] = resolve_path(context, name)
    link = unsubscribe_url(sr.rt.settings.public_url, contact_id, sr.rt.secret())
    rendered_values = {**values, "RESEND_UNSUBSCRIBE_URL": link}
    subject = render(subject_source, rendered_values, html=False)
    html = render(template.html, rendered_values, html=True) if template.html else None
    text = render(template.text_body, rendered_values, html=False) if template.text_body else None
    row = outbox_store.write_outbox(
        sr.session,
        values={
            "run_id": sr.claimed.run_id,
            "step_key": sr.step.key,
            "to_address": to,
            "sender": sender,
            "subject": subject,
            "template_id": template.id,
            "variables": given,
            "created_at": sr.now,
        },
    )
    reply_to = config.get("reply_to") or template.reply_to or ()
    message = OutgoingEmail(
        email_id=str(row.id),
        idempotency_key=f"automations-{row.id}",
        sender=sender,
        to=(to,),
        subject=subject,
        html=html,
        text=text,
        reply_to=(reply_to,) if isinstance(reply_to, str) else tuple(reply_to),
        unsubscribe_url=link,
    )
    return PreparedEmail(message=message, output=email_output(row))


def deliver(rt: Runtime, prepared: PreparedEmail) -> str | StepFailure:
    """Hand the email to the transport, with no transaction open: provider id, or the failure."""
    try:
        return rt.transport.send(prepared.message)
    except StepFailure as failure:
        return failure
    except Exception as exc:
        # A transport that breaks in an unforeseen way must not leave the step running: the
        # failure is recorded and retried (or failed at once when it cannot change).
        log.error("the transport raised an unexpected error", exc_info=exc)
        return classify(exc).as_step_failure()
