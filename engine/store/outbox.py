"""The email outbox: one row per (run, send_email step), written before sending."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session

from engine.store.core import OUTBOX, execute
from engine.store.dialect import insert_ignoring_conflicts
from models.enums import OutboxStatus

_BY_STEP = select(OUTBOX).where(
    OUTBOX.c.run_id == bindparam("run_id"), OUTBOX.c.step_key == bindparam("step_key")
)


def get_outbox(session: Session, run_id: uuid.UUID, step_key: str) -> Row[Any] | None:
    """The outbox row of this (run, step), its columns as attributes, if one was written."""
    return execute(session, _BY_STEP, {"run_id": run_id, "step_key": step_key}).first()


def write_outbox(session: Session, *, values: dict[str, Any]) -> Row[Any]:
    """The outbox row of this (run, step): inserted now, or the one an earlier attempt wrote."""
    inserted = execute(
        session,
        insert_ignoring_conflicts(
            session,
            OUTBOX,
            {"id": uuid.uuid4(), "status": OutboxStatus.SENDING, "attempts": 0, **values},
        ).returning(*OUTBOX.c),
    ).first()
    row = inserted or get_outbox(session, values["run_id"], values["step_key"])
    assert row is not None
    return row


def record_attempt(
    session: Session,
    email_id: uuid.UUID,
    *,
    status: OutboxStatus,
    now: dt.datetime,
    provider_message_id: str | None = None,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "attempts": OUTBOX.c.attempts + 1}
    if status == OutboxStatus.SENT:
        values.update(sent_at=now, provider_message_id=provider_message_id, last_error=None)
    else:
        values["last_error"] = error
    stmt = update(OUTBOX).where(OUTBOX.c.id == email_id)
    if status != OutboxStatus.SENT:
        stmt = stmt.where(OUTBOX.c.status != OutboxStatus.SENT)  # a sent email stays sent
    execute(session, stmt.values(**values))
