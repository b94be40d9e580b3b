"""Housekeeping tables: what the API and the sweeper keep about requests, sessions, deleted
items and periodic jobs, beside the state of contacts, automations and runs (models/tables.py)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.tables import Base


class DashboardSessionRecord(Base):
    """A signed-in dashboard session: its cookie is honoured only while this row exists, so
    signing out (which deletes it) ends the session on the server, not just in the browser."""

    __tablename__ = "dashboard_sessions"
    __table_args__ = (Index("ix_dashboard_sessions_expires", "expires_at"),)

    # SHA-256 of the session id the cookie carries: reading this table yields no cookie.
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]


class GonePosition(Base):
    """Where a deleted item stood in its list, kept a while so that a page cursor naming it
    still says where the next page starts (engine/store/paging.py)."""

    __tablename__ = "gone_positions"
    __table_args__ = (Index("ix_gone_positions_gone_at", "gone_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[dt.datetime]
    gone_at: Mapped[dt.datetime]
    # The table the item was deleted from: a place in that kind of list only. NULL on rows
    # from before migration 0013, taken for a place in any list until they are pruned.
    kind: Mapped[str | None] = mapped_column(String(40))


class IdempotencyRecord(Base):
    """The first answer to a POST with an Idempotency-Key, replayed for 24 hours."""

    __tablename__ = "idempotency_records"
    __table_args__ = (Index("ix_idempotency_records_expires", "expires_at"),)

    # Hash of (caller, key): one caller's keys never collide with another's.
    scope_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]


class Heartbeat(Base):
    """When a periodic job last completed, by the job's fixed name (`sweeper`): what an
    operator alerts on when beat or the sweeper stops (engine/sweeper_health.py)."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # When the row was made: the wait for a first beat is counted from here.
    created_at: Mapped[dt.datetime]
    beat_at: Mapped[dt.datetime | None]
