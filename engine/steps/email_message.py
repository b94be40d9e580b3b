"""A send_email step's email: check, render and write the outbox row (claim transaction); send."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from engine.addresses import MAX_SENDER, AddressError, Mailbox, parse_address, parse_mailbox
from engine.errors import StepFailure
from engine.failures import classify
from engine.headers import INVALID_HEADER_VALUE, header_problem
from engine.html_text import html_to_text
from engine.mail import OutgoingEmail
from engine.outcomes import Completed, Failed, Outcome, Skipped
from engine.progress import StepRef
from engine.runtime import Runtime
from engine.steps.context import StepRun
from engine.store import content as content_store
from engine.store import outbox as outbox_store
from engine.store.claims import Along
from engine.store.direct import Record
from engine.store.outbox import Email, SendReads
from engine.templates import (
    UNSUBSCRIBE_VARIABLE,
    format_value,
    names_without_fallback,
    placeholder_names,
    render,
)
from engine.unsubscribe import unsubscribe_url
from engine.variables import MissingField, resolve_path, resolve_variables
from models.enums import DomainStatus, OutboxStatus, SkipReason

log = logging.getLogger(__name__)

_CONTEXT_ROOTS = ("event.", "contact.", "wait_events.")


@dataclass(frozen=True)
class PreparedEmail:
    message: OutgoingEmail
    output: dict[str, Any]


def email_output(email: Email) -> dict[str, Any]:
    """The step output API.md specifies: to, email_id, template id and variables."""
    return {
        "to": email.to_address,
        "email_id": str(email.id),
        "template": {
            "id": str(email.template_id) if email.template_id else None,
            "variables": email.variables,
        },
    }


def prepare_email(sr: StepRun) -> Outcome | PreparedEmail:
    """Everything up to the transport, inside the claim transaction."""
    # The step is claimed and the email's making begins: the outbox row's created_at, which
    # tells the claim from the render (bench.latency) without a statement of its own.
    begun = sr.rt.clock.now()
    contact = sr.run.contact
    assert contact is not None
    reads = sr.claim_read
    if not isinstance(reads, SendReads):  # not read by the claim's statement
        reads = outbox_store.read_for_send(
            sr.session, sr.claimed.run_id, sr.step.key, **_send_keys(sr.step.config)
        )
    if reads.email is not None and reads.email.status == OutboxStatus.SENT:
        # Sent before a crash or by a worker whose lease ran out: never send twice, and record
        # it as sent even if the contact has unsubscribed since (from that very email, maybe).
        return Completed(output=email_output(reads.email))
    if contact.unsubscribed:
        if reads.email is None:
            return Skipped(SkipReason.UNSUBSCRIBED, output={"to": contact.email})
        settled = settle_unsent(sr.session, reads.email)
        return Skipped(SkipReason.UNSUBSCRIBED, output={**email_output(reads.email), **settled})
    try:
        prepared = _render_and_write(sr, reads, contact.email, contact.id, begun)
    except StepFailure as failure:
        return Failed(failure.message, failure.code)
    if reads.email is not None and reads.email.status == OutboxStatus.FAILED:
        # Sent again (an operator's retry): `failed` would deny a send this try may make.
        outbox_store.mark_sending(sr.session, reads.email.id)
    return prepared


def reads_on_claim(config: Mapping[str, Any]) -> Along[SendReads]:
    """What `prepare_email` reads first, for the step's claim to read (StepTypeSpec)."""
    return outbox_store.send_reads_along(**_send_keys(config))


def _send_keys(config: Mapping[str, Any]) -> dict[str, str | None]:
    """What a send reads by: its template's id or alias, the sender it names (else the
    template's)."""
    ref = config["template"]
    return {
        "template_id": ref.get("id"),
        "alias": ref.get("alias"),
        "sender": config.get("from") or None,
    }


UNKNOWN_NOTE = (
    "An earlier try may have sent this email: it was handed to the transport and its outcome"
    " was never recorded. It is not sent again."
)


def settle_unsent(session: Session, email: Email) -> dict[str, Any]:
    """The step ends without sending the email a try wrote, and no try will follow: the email's
    final state (`unknown` if a try may have sent it), its bodies dropped as a sent one's are;
    what the step's output says of it."""
    status = email.status
    if status != OutboxStatus.SENT:
        final = OutboxStatus.UNKNOWN if status == OutboxStatus.SENDING else OutboxStatus(status)
        status = outbox_store.close_unsent(session, email.id, status=final)
    said: dict[str, Any] = {"email_id": str(email.id), "email_status": status}
    if status == OutboxStatus.UNKNOWN:
        said["email_note"] = UNKNOWN_NOTE
    return said


def abandon_email(session: Session, ref: StepRef) -> dict[str, Any]:
    """The step is skipped before it reads anything (its contact was deleted): settle the email
    an earlier try wrote, if one did; its id and state, nothing of the contact."""
    email = outbox_store.find_email(session, ref.run_id, ref.step_key)
    return settle_unsent(session, email) if email is not None else {}


def _template(sr: StepRun, reads: SendReads) -> Record:
    template = reads.template
    if template is None:
        ref = sr.step.config["template"]
        raise StepFailure(
            f"Template `{ref.get('id') or ref.get('alias')}` not found", code="template_not_found"
        )
    if template.current_version_id is None:
        raise StepFailure(
            f"Template `{template.alias or template.id}` is not published",
            code="template_not_published",
        )
    return template


def _sender(sr: StepRun, sender: str | None, reads: SendReads) -> Mailbox:
    if not sender:
        raise StepFailure(
            "No sender: set `from` on the step or on the template", code="missing_sender"
        )
    mailbox = _mailbox(sender, "From")
    if len(str(mailbox)) > MAX_SENDER:  # a step saved before its `from` was held to this
        raise StepFailure(
            f"The From header would hold {len(str(mailbox))} characters, more than the"
            f" {MAX_SENDER} an email's sender is stored in; shorten the step's `from`",
            code="invalid_address",
        )
    domain = mailbox.address.rpartition("@")[2]
    if reads.sender_domain == domain.lower():
        status = reads.sender_domain_status
    else:  # an address whose domain the statement did not find as this parse does
        status = content_store.domain_status(sr.session, domain)
    if status != DomainStatus.VERIFIED:
        raise StepFailure(f"Sender domain `{domain}` is not verified", code="domain_not_verified")
    return mailbox


def _mailbox(value: object, header: str) -> Mailbox:
    """A stored from / reply-to, checked again: it may predate the checks at the door."""
    try:
        return parse_mailbox(value)
    except AddressError as error:
        raise _address_failure(header, value, error) from None


def _recipient(address: str) -> str:
    """The contact's address as the one recipient, checked again for the same reason."""
    try:
        return parse_address(address)
    except AddressError as error:
        raise _address_failure("To", address, error) from None


def _address_failure(header: str, value: object, error: AddressError) -> StepFailure:
    if isinstance(value, str) and header_problem(value) is not None:
        return _header_failure(header, value)
    return StepFailure(
        f"The {header} address {value!r} {error.rule}; correct it where it is stored"
        f" ({'the contact' if header == 'To' else 'the step or the template'})",
        code="invalid_address",
    )


def _header_failure(header: str, text: str, origin: str = "") -> StepFailure:
    """`invalid_header_value`: the header, what is wrong, and where the value came from."""
    return StepFailure(
        f"The {header} header would hold {header_problem(text)}{origin}: a header is one"
        " line without control characters, so nothing was sent. Remove line breaks and control"
        " characters from that value, or use it only in the email's body",
        code=INVALID_HEADER_VALUE,
    )


def _checked_subject(subject: str, source: str, values: dict[str, Any], refs: Any) -> str:
    """The rendered subject, or the failure naming the variable that brought a control character."""
    if header_problem(subject) is None:
        return subject
    for name in sorted(placeholder_names(source)):
        if name in values and header_problem(format_value(values[name])) is not None:
            ref = refs.get(name) if isinstance(refs, dict) else None
            where = f" ({ref['var']})" if isinstance(ref, dict) and "var" in ref else ""
            raise _header_failure("Subject", subject, f", from the variable `{name}`{where}")
    raise _header_failure("Subject", subject, ", in the subject's own text")


def _values(
    sr: StepRun, template: Record, sources: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The variables the step gives (stored with the email) and every value the texts use."""
    config = sr.step.config
    names: set[str] = set().union(*(placeholder_names(text) for text in sources))
    context = sr.variables(wait_events=any(name.startswith("wait_events.") for name in names))
    fallbacks = {
        v["key"]: v["fallback_value"]
        for v in template.variables
        if v.get("fallback_value") is not None
    }
    # A missing field whose every placeholder has an inline fallback is left to that fallback.
    bare: set[str] = set().union(*(names_without_fallback(text) for text in sources))
    resolved = resolve_variables(
        config["template"].get("variables", {}), context, fallbacks, optional=names - bare
    )
    # A field that exists but is empty (a contact without a first name) takes the fallback too.
    given = {k: fallbacks[k] if v is None and k in fallbacks else v for k, v in resolved.items()}
    values = {**fallbacks, **given}
    for name in names:
        if name not in values and name.startswith(_CONTEXT_ROOTS):
            # A missing one is reported by render() unless the placeholder has a fallback.
            with contextlib.suppress(MissingField):
                values[name] = resolve_path(context, name)
    return given, values


def _render_and_write(
    sr: StepRun, reads: SendReads, to: str, contact_id: uuid.UUID, begun: dt.datetime
) -> PreparedEmail:
    recorded = reads.email
    if recorded is not None and recorded.reply_to is not None:
        # An earlier try wrote the row and did not send, or does not know: this one sends the
        # message that try rendered, byte for byte, under the same id, whatever changed since
        # (the template, the contact), as a provider's idempotency key requires. The sender's
        # domain must still be verified.
        _sender(sr, recorded.sender, reads)
        return _prepared(recorded)
    config = sr.step.config
    template = _template(sr, reads)
    # A row from before migration 0010 kept to, from and subject but not the rest: its retry
    # renders the rest again.
    sender = _sender(
        sr, recorded.sender if recorded else config.get("from") or template.sender, reads
    )
    subject_source = config.get("subject") or template.subject
    if not subject_source:
        raise StepFailure(
            "No subject: set `subject` on the step or on the template", code="missing_subject"
        )
    sources = (subject_source, template.html or "", template.text_body or "")
    given, values = _values(sr, template, sources)
    link = unsubscribe_url(sr.rt.settings.public_url, contact_id, sr.rt.secret())
    values[UNSUBSCRIBE_VARIABLE] = link
    # Every header is checked before the outbox row is written: a value that cannot go out
    # fails the step now, and is never retried or half-sent.
    subject = (
        recorded.subject
        if recorded
        else _checked_subject(
            render(subject_source, values, html=False, part="subject"),
            subject_source,
            values,
            config["template"].get("variables"),
        )
    )
    recipient = _recipient(recorded.to_address if recorded else to)
    reply_to = config.get("reply_to") or template.reply_to or ()
    replies = [
        str(_mailbox(item, "Reply-To"))
        for item in ([reply_to] if isinstance(reply_to, str) else reply_to)
    ]
    html = render(template.html, values, html=True, part="html") if template.html else None
    text = render(template.text_body, values, html=False) if template.text_body else None
    if template.text_body is None and html is not None:
        # As Resend does: a template without text gets one made from its html (an empty
        # text opts out), since html-only mail reads worse and scores worse as spam.
        text = html_to_text(html) or None
    if recorded is not None:
        return _prepared(
            replace(recorded, reply_to=replies, html=html, text_body=text, unsubscribe_url=link)
        )
    columns = {
        "created_at": begun,
        "to_address": recipient,
        "sender": str(sender),
        "subject": subject,
        "template_id": template.id,
        "variables": given,
        "reply_to": replies,
        "html": html,
        "text_body": text,
        "unsubscribe_url": link,
    }
    # Another worker whose lease ran out may have written the row first: its message goes.
    return _prepared(_write(sr, columns))


def _prepared(email: Email) -> PreparedEmail:
    """The message an outbox row records, as the transport takes it."""
    message = OutgoingEmail(
        email_id=str(email.id),
        idempotency_key=f"automations-{email.id}",
        sender=email.sender,
        to=(email.to_address,),
        subject=email.subject,
        html=email.html,
        text=email.text_body,
        reply_to=tuple(email.reply_to or ()),
        unsubscribe_url=email.unsubscribe_url,
    )
    return PreparedEmail(message=message, output=email_output(email))


def _write(sr: StepRun, columns: dict[str, Any]) -> Email:
    """The outbox row of a first try, the step's start stamped with it (one statement fewer)."""
    email = outbox_store.write_outbox(
        sr.session,
        values={
            "run_id": sr.claimed.run_id,
            "step_key": sr.step.key,
            **columns,
        },
        started=sr.now,
    )
    sr.start_stamped = True
    return email


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
