"""The sweeper's health from its heartbeat row, and the limit it is judged by."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from pydantic import ValidationError

from engine.settings import Settings
from engine.store.heartbeats import Beat
from engine.sweeper_health import judge
from models.enums import SweeperStatus

T0 = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)
LIMIT = 60.0


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_a_recent_tick_is_ok_and_one_past_the_limit_is_late() -> None:
    ticked = Beat(created_at=T0, beat_at=at(100))
    fresh = judge(ticked, now=at(160), late_after=LIMIT)
    assert (fresh.status, fresh.last_tick_at, fresh.age_seconds) == ("ok", at(100), 60.0)
    stale = judge(ticked, now=at(160.5), late_after=LIMIT)
    assert stale.status == SweeperStatus.LATE and stale.late and stale.age_seconds == 60.5


def test_before_the_first_tick_the_wait_counts_from_the_row_made_by_the_upgrade() -> None:
    """A fresh deployment is not late before beat had the time to tick, and is once it had."""
    untouched = Beat(created_at=T0, beat_at=None)
    waiting = judge(untouched, now=at(30), late_after=LIMIT)
    assert (waiting.status, waiting.last_tick_at, waiting.age_seconds) == ("waiting", None, 30.0)
    assert not waiting.late
    never = judge(untouched, now=at(61), late_after=LIMIT)
    assert never.status == SweeperStatus.LATE and never.last_tick_at is None


def test_no_heartbeat_row_is_late_with_an_unknown_age() -> None:
    missing = judge(None, now=T0, late_after=LIMIT)
    assert missing.status == SweeperStatus.LATE and math.isinf(missing.age_seconds)


def test_a_tick_stamped_by_a_clock_a_little_ahead_is_not_a_negative_age() -> None:
    ahead = judge(Beat(created_at=T0, beat_at=at(2)), now=T0, late_after=LIMIT)
    assert (ahead.status, ahead.age_seconds) == ("ok", 0.0)


@pytest.mark.parametrize(
    ("interval", "limit"), [(5, 60.0), (1, 60.0), (6, 60.0), (10, 100.0), (30, 300.0)]
)
def test_the_limit_is_ten_intervals_and_at_least_a_minute_by_default(
    interval: float, limit: float
) -> None:
    assert Settings(sweeper_interval_seconds=interval).sweeper_late_after == limit


def test_a_limit_set_is_used_if_it_spans_two_intervals() -> None:
    assert Settings(sweeper_late_after_seconds=10).sweeper_late_after == 10
    assert (
        Settings(sweeper_interval_seconds=30, sweeper_late_after_seconds=900).sweeper_late_after
        == 900
    )


@pytest.mark.parametrize("limit", [9.9, 0, -1])
def test_a_limit_under_two_intervals_is_refused_naming_the_variable(limit: float) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(sweeper_late_after_seconds=limit)
    (error,) = refused.value.errors()
    assert error["loc"] == ("sweeper_late_after_seconds",)
