"""Is the sweeper ticking? Each completed tick stamps a heartbeat row; its age says whether
beat and the sweeper still run (they fail silently: timers, lost messages and wait timeouts
just stop being swept)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine.store import heartbeats
from engine.store.heartbeats import Beat
from models.enums import SweeperStatus

# The heartbeat row of the sweeper (made by migration 0011, stamped by every completed tick).
HEARTBEAT = "sweeper"


@dataclass(frozen=True)
class SweeperHealth:
    status: SweeperStatus
    last_tick_at: dt.datetime | None
    # Since the last tick, or since the row was made when none has completed yet; infinite
    # when nothing is known (no row).
    age_seconds: float
    late_after_seconds: float

    @property
    def late(self) -> bool:
        return self.status == SweeperStatus.LATE


def judge(found: Beat | None, *, now: dt.datetime, late_after: float) -> SweeperHealth:
    """The sweeper's health from its heartbeat row at `now`."""
    if found is None:
        return SweeperHealth(SweeperStatus.LATE, None, math.inf, late_after)
    since = found.beat_at or found.created_at
    # Never negative: another process's clock a little ahead of ours.
    age = max((now - since).total_seconds(), 0.0)
    if age > late_after:
        status = SweeperStatus.LATE
    else:
        status = SweeperStatus.OK if found.beat_at else SweeperStatus.WAITING
    return SweeperHealth(status, found.beat_at, age, late_after)


def sweeper_health(session: Session, *, now: dt.datetime, late_after: float) -> SweeperHealth:
    """Read the sweeper's heartbeat and judge it: one primary-key read."""
    return judge(heartbeats.last(session, HEARTBEAT), now=now, late_after=late_after)


def record_tick(session: Session, now: dt.datetime) -> None:
    """Stamp the heartbeat in the tick's own transaction: recorded if and only if it commits."""
    heartbeats.beat(session, HEARTBEAT, now)
