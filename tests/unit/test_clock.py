"""The reference clock: the database server's time kept in this process."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from engine.clock import FrozenClock, ReferenceClock, clock_from_setting

SERVER = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)
FIVE_MINUTES = dt.timedelta(minutes=5)


def test_the_server_time_is_kept_whatever_the_host_clock_says() -> None:
    host = FrozenClock(SERVER - FIVE_MINUTES)  # this host is five minutes behind
    clock = ReferenceClock(lambda: SERVER, fallback=host)
    first = clock.now()
    assert abs(first - SERVER) < dt.timedelta(seconds=1)

    # NTP steps the host's clock back an hour: the process's time goes on from the server's.
    host.advance(-dt.timedelta(hours=1))
    time.sleep(0.01)
    later = clock.now()
    assert later > first
    assert abs(later - SERVER) < dt.timedelta(seconds=1)


def test_a_reading_that_fails_keeps_the_last_one_and_is_tried_again_soon() -> None:
    readings = [SERVER + dt.timedelta(hours=1), OSError("connection refused"), SERVER]

    def read() -> dt.datetime:
        reading = readings.pop()
        if isinstance(reading, Exception):
            raise reading
        return reading

    clock = ReferenceClock(
        read, every=0.05, retry_after=0.05, fallback=FrozenClock(SERVER - FIVE_MINUTES)
    )
    assert abs(clock.now() - SERVER) < dt.timedelta(seconds=1)
    time.sleep(0.06)
    assert abs(clock.now() - SERVER) < dt.timedelta(seconds=1), "the failed reading changed it"
    time.sleep(0.06)
    assert abs(clock.now() - SERVER - dt.timedelta(hours=1)) < dt.timedelta(seconds=1)
    assert not readings


def test_the_reference_is_read_again_only_after_its_interval() -> None:
    reads = []

    def read() -> dt.datetime:
        reads.append(1)
        return SERVER

    clock = ReferenceClock(read, every=3600)
    for _ in range(100):
        clock.now()
    assert len(reads) == 1


def test_a_server_that_never_answers_leaves_the_host_clock() -> None:
    def read() -> dt.datetime:
        raise OSError("connection refused")

    host = FrozenClock(SERVER - FIVE_MINUTES)
    clock = ReferenceClock(read, fallback=host)
    assert clock.now() == host.now()


def test_the_database_clock_is_the_system_clock_with_nothing_to_read() -> None:
    clock = clock_from_setting("database")
    assert abs(clock.now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=1)
    with pytest.raises(ValueError, match="database"):
        clock_from_setting("ntp")
