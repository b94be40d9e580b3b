"""Signed-in dashboard sessions, stored by the hash of their id."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.housekeeping import DashboardSessionRecord


def insert_session(
    session: Session, *, id_hash: str, key_id: uuid.UUID, now: dt.datetime, expires_at: dt.datetime
) -> None:
    session.add(
        DashboardSessionRecord(
            id_hash=id_hash, key_id=key_id, created_at=now, expires_at=expires_at
        )
    )
    session.flush()


def session_is_open(session: Session, id_hash: str, key_id: uuid.UUID, now: dt.datetime) -> bool:
    found = session.scalar(
        select(DashboardSessionRecord.id_hash).where(
            DashboardSessionRecord.id_hash == id_hash,
            DashboardSessionRecord.key_id == key_id,
            DashboardSessionRecord.expires_at > now,
        )
    )
    return found is not None


def delete_session(session: Session, id_hash: str) -> None:
    session.execute(delete(DashboardSessionRecord).where(DashboardSessionRecord.id_hash == id_hash))


def delete_expired(session: Session, now: dt.datetime) -> int:
    result = session.execute(
        delete(DashboardSessionRecord).where(DashboardSessionRecord.expires_at <= now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
