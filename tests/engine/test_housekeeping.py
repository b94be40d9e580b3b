"""What the sweeper tidies on each tick: Idempotency-Key answers older than their 24 hours."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from engine import idempotency
from engine.db import transaction
from models.housekeeping import IdempotencyRecord
from tests.engine.driver import Driver


def remember(driver: Driver, key: str) -> None:
    with transaction(driver.rt.sessions) as session:
        scope = idempotency.scope_key("caller", key)
        assert idempotency.begin(session, scope, "hash", now=driver.clock.now()) is None
        idempotency.finish(session, scope, 202, b"{}")


def kept(driver: Driver) -> int:
    with transaction(driver.rt.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(IdempotencyRecord)) or 0)


def test_a_tick_forgets_answers_past_their_24_hours(driver: Driver) -> None:
    remember(driver, "old")
    driver.clock.advance(dt.timedelta(hours=23))
    remember(driver, "recent")
    driver.tick()
    assert kept(driver) == 2

    driver.clock.advance(dt.timedelta(hours=2))  # "old" is 25 hours old, "recent" 2
    driver.tick()
    assert kept(driver) == 1
