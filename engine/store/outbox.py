"""The email outbox: one row per (run, send_email step), written before sending."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session

from engine.store.core import OUTBOX, execute
from engine.store.dialect import insert_or_ignore
from models.enums import OutboxStatus

_BY_STEP = select(OUTBOX).where(
    OUTBOX.c.run_id == bindparam("run_id"), OUTBOX.c.step_key == bindparam("step_key")
)


def get_outbox(session: Session, run_id: uuid.UUID, step_key: str) -> Row[Any] | None:
    """The outbox row of this (run, step), its columns as attributes, if one was written."""
    return execute(session, _BY_STEP, {"run_id": run_id, "step_key": step_key}).first()


def write_outbox(session: Session, *, values: dict[str, Any]) -> Row[Any]:
    """The outbox row of this (run, step): inserted now, or the one an earlier attempt wrote."""
    row = {"id": uuid.uuid4(), "status": OutboxStatus.SENDING, "attempts": 0, **values}
    returning = tuple(column.name for column in OUTBOX.c)
    inserted = execute(session, insert_or_ignore(session, OUTBOX, *returning), row).first()
    found = inserted or get_outbox(session, values["run_id"], values["step_key"])
    assert found is not None
    return found


_THIS_EMAIL = OUTBOX.c.id == bindparam("email_id")
_ONE_MORE_ATTEMPT = {"status": bindparam("new_status"), "attempts": OUTBOX.c.attempts + 1}
_RECORD_SENT = (
    update(OUTBOX)
    .where(_THIS_EMAIL)
    .values(
        **_ONE_MORE_ATTEMPT,
        sent_at=bindparam("sent_at", type_=OUTBOX.c.sent_at.type),
        provider_message_id=bindparam("provider_message_id"),
        last_error=None,
    )
)
_RECORD_FAILED = (
    update(OUTBOX)
    # A sent email stays sent.
    .where(_THIS_EMAIL, OUTBOX.c.status != OutboxStatus.SENT)
    .values(**_ONE_MORE_ATTEMPT, last_error=bindparam("error"))
)


def record_attempt(
    session: Session,
    email_id: uuid.UUID,
    *,
    status: OutboxStatus,
    now: dt.datetime,
    provider_message_id: str | None = None,
    error: str | None = None,
) -> None:
    params: dict[str, Any] = {"email_id": email_id, "new_status": status}
    if status == OutboxStatus.SENT:
        params.update(sent_at=now, provider_message_id=provider_message_id)
        execute(session, _RECORD_SENT, params)
    else:
        execute(session, _RECORD_FAILED, {**params, "error": error})
