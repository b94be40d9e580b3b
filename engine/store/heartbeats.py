"""Heartbeats: one row per periodic job, rewritten each time the job completes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.store.dialect import insert_or_update
from models.housekeeping import Heartbeat


@dataclass(frozen=True)
class Beat:
    created_at: dt.datetime
    beat_at: dt.datetime | None


def beat(session: Session, name: str, now: dt.datetime) -> None:
    """Record that the job `name` completed at `now`: one statement, on its primary key."""
    table = Heartbeat.__table__
    row = {"name": name, "created_at": now, "beat_at": now}
    session.execute(
        insert_or_update(session, table, row, index="name", update={"beat_at": now})  # type: ignore[arg-type]
    )


def last(session: Session, name: str) -> Beat | None:
    """The job's row, or None if it has none (a schema not made by the migrations)."""
    row = session.execute(
        select(Heartbeat.created_at, Heartbeat.beat_at).where(Heartbeat.name == name)
    ).one_or_none()
    return None if row is None else Beat(row.created_at, row.beat_at)
