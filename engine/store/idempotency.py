"""Idempotency records: the first answer to a keyed POST, kept for replay."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from engine.store.dialect import insert_ignoring_conflicts
from models.housekeeping import IdempotencyRecord


def claim_record(
    session: Session, scope_key: str, request_hash: str, now: dt.datetime, expires_at: dt.datetime
) -> bool:
    """Insert an in-progress record; False when one with this scope key exists."""
    inserted = session.execute(
        insert_ignoring_conflicts(
            session,
            IdempotencyRecord.__table__,  # type: ignore[arg-type]
            {
                "scope_key": scope_key,
                "request_hash": request_hash,
                "created_at": now,
                "expires_at": expires_at,
            },
        ).returning(IdempotencyRecord.scope_key)
    ).first()
    return inserted is not None


def get_record(session: Session, scope_key: str) -> IdempotencyRecord | None:
    return session.scalars(
        select(IdempotencyRecord).where(IdempotencyRecord.scope_key == scope_key).with_for_update()
    ).first()


def restart_record(
    session: Session, scope_key: str, request_hash: str, now: dt.datetime, expires_at: dt.datetime
) -> None:
    session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.scope_key == scope_key)
        .values(
            request_hash=request_hash,
            status_code=None,
            response_body=None,
            created_at=now,
            expires_at=expires_at,
        )
        .execution_options(synchronize_session=False)
    )


def complete_record(session: Session, scope_key: str, status_code: int, body: bytes) -> None:
    session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.scope_key == scope_key)
        .values(status_code=status_code, response_body=body)
        .execution_options(synchronize_session=False)
    )


def delete_record(session: Session, scope_key: str) -> None:
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.scope_key == scope_key))


def delete_expired(session: Session, now: dt.datetime, *, limit: int = 1000) -> int:
    """Forget up to `limit` records past their 24 hours, oldest first (by the expiry index)."""
    expired = (
        select(IdempotencyRecord.scope_key)
        .where(IdempotencyRecord.expires_at < now)
        .order_by(IdempotencyRecord.expires_at)
        .limit(limit)
    )
    result = session.execute(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.scope_key.in_(expired.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
