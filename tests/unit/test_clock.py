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
    # Popped from the end; a reading reads twice when the first read answers.
    later = SERVER + dt.timedelta(hours=1)
    readings = [later, later, OSError("connection refused"), SERVER, SERVER]

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
    assert len(reads) == 2  # one reading: two reads, the faster one kept


def test_a_slow_first_read_does_not_put_the_clock_ahead() -> None:
    """The first read of a process opens its connection (20 ms here) before the server reads
    its clock: placed halfway through that round trip, it put the clock 10 ms ahead. Of two
    reads, the one with the shorter round trip is kept."""
    started = time.monotonic()

    def server_now() -> dt.datetime:
        return SERVER + dt.timedelta(seconds=time.monotonic() - started)

    reads = []

    def read() -> dt.datetime:
        if not reads:
            time.sleep(0.02)  # connecting
        reads.append(1)
        return server_now()

    clock = ReferenceClock(read)
    assert abs(clock.now() - server_now()) < dt.timedelta(milliseconds=3)


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
