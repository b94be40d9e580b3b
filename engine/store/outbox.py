"""The email outbox: one row per (run, send_email step), written before sending."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.store.dialect import insert_ignoring_conflicts
from models.enums import OutboxStatus
from models.tables import OutboxEmail


def get_outbox(session: Session, run_id: uuid.UUID, step_key: str) -> OutboxEmail | None:
    return session.scalars(
        select(OutboxEmail).where(OutboxEmail.run_id == run_id, OutboxEmail.step_key == step_key)
    ).first()


def write_outbox(session: Session, *, values: dict[str, Any]) -> OutboxEmail:
    """The outbox row of this (run, step): inserted now, or the one an earlier attempt wrote."""
    session.execute(
        insert_ignoring_conflicts(
            session,
            OutboxEmail.__table__,  # type: ignore[arg-type]
            {"id": uuid.uuid4(), "status": OutboxStatus.SENDING, "attempts": 0, **values},
        )
    )
    row = get_outbox(session, values["run_id"], values["step_key"])
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
    values: dict[str, Any] = {"status": status, "attempts": OutboxEmail.attempts + 1}
    if status == OutboxStatus.SENT:
        values.update(sent_at=now, provider_message_id=provider_message_id, last_error=None)
    else:
        values["last_error"] = error
    stmt = update(OutboxEmail).where(OutboxEmail.id == email_id)
    if status != OutboxStatus.SENT:
        stmt = stmt.where(OutboxEmail.status != OutboxStatus.SENT)  # a sent email stays sent
    session.execute(stmt.values(**values).execution_options(synchronize_session=False))
