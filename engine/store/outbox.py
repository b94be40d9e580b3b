"""The email outbox: one row per (run, send_email step), written before sending; and what a
send reads before it renders (its outbox row, its template, its sender domain's status)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    bindparam,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from engine.store import runs as run_store
from engine.store.claims import Along
from engine.store.content import VERSIONED
from engine.store.core import (
    DOMAINS,
    OUTBOX,
    RUNS,
    TEMPLATE_VERSIONS,
    TEMPLATES,
    Carried,
    execute,
)
from engine.store.dialect import insert_or_ignore
from engine.store.direct import Record
from models.enums import OutboxStatus
from models.ids import new_id

_BY_STEP = select(OUTBOX).where(
    OUTBOX.c.run_id == bindparam("run_id"), OUTBOX.c.step_key == bindparam("step_key")
)


def get_outbox(session: Session, run_id: uuid.UUID, step_key: str) -> Any:
    """The outbox row of this (run, step), its columns as attributes, if one was written
    (else None)."""
    return execute(session, _BY_STEP, {"run_id": run_id, "step_key": step_key}).first()


def find_email(session: Session, run_id: uuid.UUID, step_key: str) -> Email | None:
    """The email of this (run, step), if a try wrote one."""
    row = get_outbox(session, run_id, step_key)
    return _email(row) if row is not None else None


@dataclass(frozen=True)
class Email:
    """An outbox row as a send reads it."""

    id: uuid.UUID
    status: str
    to_address: str
    sender: str
    subject: str
    template_id: uuid.UUID | None
    variables: dict[str, Any]
    # The rest of the message as the first try rendered it; reply_to is None on a row from
    # before migration 0010, which kept none.
    reply_to: list[str] | None
    html: str | None
    text_body: str | None
    unsubscribe_url: str | None


_EMAIL_COLUMNS = (
    "id",
    "status",
    "to_address",
    "sender",
    "subject",
    "template_id",
    "variables",
    "reply_to",
    "html",
    "text_body",
    "unsubscribe_url",
)


def _email(row: Record, prefix: str = "") -> Email:
    return Email(*(getattr(row, prefix + name) for name in _EMAIL_COLUMNS))


@dataclass(frozen=True)
class SendReads:
    """What a send_email step reads before it renders, one statement on either dialect."""

    # The email this (run, step) wrote on an earlier try, if any.
    email: Email | None
    # The template (id, alias, status, current_version_id) with the content of its published
    # version (subject, sender, reply_to, html, text_body, variables) as attributes; None if
    # there is no such template. The content is None while no version is published.
    template: Record | None
    # The domain of the sender (the step's, else the template's) as the statement read it from
    # the address, lowercased, and that domain's status. A guess from the text: the caller
    # compares it with the domain it parses and reads the status itself when they differ.
    sender_domain: str | None
    sender_domain_status: str | None


_OUTBOX_LABEL = "outbox_"


def read_for_send(
    session: Session,
    run_id: uuid.UUID,
    step_key: str,
    *,
    template_id: str | None,
    alias: str | None,
    sender: str | None,
) -> SendReads:
    """This (run, step)'s outbox row, the template by id or alias, and the status of the
    domain of `sender` (or of the template's sender, when `sender` is None)."""
    dialect = session.get_bind().dialect.name
    by_id, params = _send_params(template_id, alias, sender)
    params.update(rid=run_id, key=step_key)
    return _send_reads(execute(session, _read_for_send(dialect, by_id), params).one())


def send_reads_along(
    *, template_id: str | None, alias: str | None, sender: str | None
) -> Along[SendReads]:
    """`read_for_send` as a read its step's claim makes on PostgreSQL (claims.Along)."""
    by_id, params = _send_params(template_id, alias, sender)
    return Along(_read_for_send("postgresql", by_id), params, _send_reads)


def _send_params(
    template_id: str | None, alias: str | None, sender: str | None
) -> tuple[bool, dict[str, Any]]:
    """Whether the template is looked for by id, and the read's parameters but the step's."""
    by_id = template_id is not None
    key: Any = alias
    if by_id:
        try:
            key = uuid.UUID(template_id)
        except ValueError:
            key = None  # no template has that id
    return by_id, {"template": key, "sender": sender}


def _send_reads(row: Record) -> SendReads:
    return SendReads(
        email=_email(row, _OUTBOX_LABEL) if row.outbox_id is not None else None,
        template=row if row.id is not None else None,
        sender_domain=row.sender_domain,
        sender_domain_status=row.sender_domain_status,
    )


@cache
def _read_for_send(dialect: str, by_id: bool) -> Select[Any]:
    """One row whatever exists: the template with its published version's content under the
    template's column names, the outbox row's columns with a prefix, the sender's domain and
    its status; NULLs for what is missing."""
    version = TEMPLATE_VERSIONS
    sender = func.coalesce(bindparam("sender", type_=version.c.sender.type), version.c.sender)
    domain = _domain_of(dialect, sender)
    template_key = TEMPLATES.c.id if by_id else TEMPLATES.c.alias
    one = select(literal(1).label("one")).subquery("one")
    return select(
        TEMPLATES.c.id,
        TEMPLATES.c.alias,
        TEMPLATES.c.status,
        TEMPLATES.c.current_version_id,
        *(version.c[name] for name in VERSIONED),
        *(OUTBOX.c[name].label(_OUTBOX_LABEL + name) for name in _EMAIL_COLUMNS),
        domain.label("sender_domain"),
        DOMAINS.c.status.label("sender_domain_status"),
    ).select_from(
        one.outerjoin(
            OUTBOX,
            (OUTBOX.c.run_id == bindparam("rid")) & (OUTBOX.c.step_key == bindparam("key")),
        )
        .outerjoin(TEMPLATES, template_key == bindparam("template"))
        .outerjoin(version, version.c.id == TEMPLATES.c.current_version_id)
        .outerjoin(DOMAINS, DOMAINS.c.name == domain)
    )


def _domain_of(dialect: str, sender: ColumnElement[Any]) -> ColumnElement[Any]:
    """The text after the address's @ in `name@domain` or `Name <name@domain>`, lowercased
    (as domains are stored). SQLite has no regular expressions: after the first @."""
    if dialect == "postgresql":
        return func.lower(func.substring(sender, r"@([^@<>\s]+)>?\s*$"))
    after = func.substr(sender, func.instr(sender, "@") + 1)
    return func.lower(func.rtrim(after, "> "))


def write_outbox(session: Session, *, values: dict[str, Any], started: dt.datetime) -> Email:
    """The outbox row of this (run, step): inserted now, or the one an earlier attempt wrote;
    and the step's start stamped (`runs.mark_started`), in the same statement on PostgreSQL."""
    row = {"id": new_id(), "status": OutboxStatus.SENDING, "attempts": 0, **values}
    run_id, step_key = values["run_id"], values["step_key"]
    if session.get_bind().dialect.name == "postgresql":
        params = {_OUTBOX_LABEL + name: value for name, value in row.items()}
        params.update(rid=run_id, key=step_key, now=started)
        inserted = execute(session, _insert_and_mark_started(tuple(sorted(row))), params).first()
    else:
        returning = tuple(column.name for column in OUTBOX.c)
        inserted = execute(session, insert_or_ignore(session, OUTBOX, *returning), row).first()
        run_store.mark_started(session, run_id, step_key, started)
    found = inserted or get_outbox(session, run_id, step_key)
    assert found is not None
    return _email(found)


@cache
def _insert_and_mark_started(columns: tuple[str, ...]) -> Insert:
    """PostgreSQL: the outbox insert (ON CONFLICT DO NOTHING) with the step's start stamped in
    a CTE, which runs whether or not the row is inserted. The values come as parameters of
    their own: named after columns, they would also be taken as SET values of the UPDATE."""
    values = {name: bindparam(_OUTBOX_LABEL + name, type_=OUTBOX.c[name].type) for name in columns}
    return (
        postgresql.insert(OUTBOX)
        .values(values)
        .on_conflict_do_nothing()
        .returning(*(OUTBOX.c[name] for name in _EMAIL_COLUMNS))
        .add_cte(run_store.MARK_STARTED.cte("started"))
    )


_THIS_EMAIL = OUTBOX.c.id == bindparam("email_id")
# Parameters named apart from run_steps' columns and the finish statement's parameters: a
# statement that carries the mark (`mark_sent`) binds them beside its own.
_ONE_MORE_ATTEMPT = {"status": bindparam("email_status"), "attempts": OUTBOX.c.attempts + 1}
_RECORD_SENT = (
    update(OUTBOX)
    .where(_THIS_EMAIL)
    .values(
        **_ONE_MORE_ATTEMPT,
        sent_at=bindparam("email_sent_at", type_=OUTBOX.c.sent_at.type),
        provider_message_id=bindparam("provider_message_id"),
        last_error=None,
        # Sent: no try will send it again, and the bodies are the bulk of the row.
        html=None,
        text_body=None,
    )
)
_RECORD_FAILED = (
    update(OUTBOX)
    # A sent email stays sent.
    .where(_THIS_EMAIL, OUTBOX.c.status != OutboxStatus.SENT)
    .values(**_ONE_MORE_ATTEMPT, last_error=bindparam("email_error"))
)
_SENT_CTE = _RECORD_SENT.returning(literal_column("1")).cte("email_sent")


def mark_sent(email_id: uuid.UUID, *, now: dt.datetime, provider_message_id: str) -> Carried:
    """The email went out: one more attempt, sent now, with the provider's id; a write that
    the caller runs, or that a later statement of the transaction carries."""
    params = {
        "email_id": email_id,
        "email_status": OutboxStatus.SENT,
        "email_sent_at": now,
        "provider_message_id": provider_message_id,
    }
    return Carried(_RECORD_SENT, _SENT_CTE, params)


_SEND_AGAIN = (
    update(OUTBOX)
    .where(_THIS_EMAIL, OUTBOX.c.status == OutboxStatus.FAILED)
    .values(status=OutboxStatus.SENDING)
)


def mark_sending(session: Session, email_id: uuid.UUID) -> None:
    """A failed email goes to the transport again (an operator's retry): its outcome is
    unknown until this try is recorded."""
    execute(session, _SEND_AGAIN, {"email_id": email_id})


_CLOSE_UNSENT = (
    update(OUTBOX)
    # Marked sent meanwhile by a worker whose lease ran out: it stays sent.
    .where(_THIS_EMAIL, OUTBOX.c.status != OutboxStatus.SENT)
    .values(status=bindparam("email_status"), html=None, text_body=None)
    .returning(OUTBOX.c.status)
)


def close_unsent(session: Session, email_id: uuid.UUID, *, status: OutboxStatus) -> str:
    """No try will follow: the email's final `status`, its bodies dropped as a sent one's
    are; the status it has now (`sent` if it was marked so meanwhile)."""
    params = {"email_id": email_id, "email_status": status}
    closed = execute(session, _CLOSE_UNSENT, params).scalar()
    return closed if closed is not None else OutboxStatus.SENT


_FORGET_BODIES_OF_CONTACT = (
    update(OUTBOX)
    .where(
        OUTBOX.c.run_id.in_(select(RUNS.c.id).where(RUNS.c.contact_id == bindparam("cid"))),
        or_(OUTBOX.c.html.is_not(None), OUTBOX.c.text_body.is_not(None)),
    )
    .values(html=None, text_body=None)
)


def forget_bodies_of_contact(session: Session, contact_id: uuid.UUID) -> None:
    """The contact is being deleted (its runs locked, still linked to it): its emails keep no
    bodies. None will be sent again: a try of a step whose contact is gone is skipped, and a
    retry or replay needs the contact; a try under way has its message in hand already."""
    execute(session, _FORGET_BODIES_OF_CONTACT, {"cid": contact_id})


def record_failed(
    session: Session, email_id: uuid.UUID, *, status: OutboxStatus, error: str
) -> None:
    """A try that did not send: one more attempt and its error (a sent email stays sent)."""
    params = {"email_id": email_id, "email_status": status, "email_error": error}
    execute(session, _RECORD_FAILED, params)
