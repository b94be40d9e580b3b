"""The only place that reads the wall clock; everything else takes `now` from a Clock."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from engine.errors import InvalidInput

log = logging.getLogger(__name__)


def utc(value: dt.datetime) -> dt.datetime:
    """The same instant as an aware UTC datetime (SQLite hands back naive ones)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def parse_timestamp(value: str, name: str) -> dt.datetime:
    """An ISO 8601 timestamp from a caller, as aware UTC; InvalidInput naming `name` if not."""
    try:
        # Years 1 and 9999 are left out: a bucket or a time zone shift could leave datetime's range.
        parsed = utc(dt.datetime.fromisoformat(value.strip()))
        if not 1 < parsed.year < 9999:
            raise ValueError(value)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"`{name}` must be an ISO 8601 timestamp such as 2026-10-01T12:00:00Z",
            field=name,
            code="invalid_parameter",
        ) from None
    return parsed


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


def _boot_time() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


# Seconds on a clock that never jumps: Linux's boot time goes on while the host is suspended
# (a VM or a laptop put to sleep), where the monotonic clock stops and would fall behind.
_elapsed: Callable[[], float] = _boot_time if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic


class ReferenceClock:
    """Another machine's clock (the database server's) kept in this process.

    Every process of a deployment decides and compares times (a due time, a lease, when an
    event arrived) against the same clock, whatever its host's says: a worker minutes behind
    would otherwise see leases run out at once and take over steps still sending. The
    reference is read when first asked, then carried forward by the boot-time clock (so a jump
    of the host's wall clock changes nothing), and read again by the first call `every`
    seconds later (a few milliseconds, once a minute; no thread, so nothing is in flight when
    a worker forks). A reading that fails keeps the last one, or the system clock before any.
    """

    def __init__(
        self,
        read: Callable[[], dt.datetime],
        *,
        every: float = 60.0,
        retry_after: float = 5.0,
        fallback: Clock | None = None,
    ) -> None:
        self._read = read
        self._every = every
        self._retry_after = retry_after
        self._fallback = fallback or SystemClock()
        # The reference's time, and the boot-time clock when it was read.
        self._anchor: tuple[dt.datetime, float] | None = None
        self._next_read = 0.0
        self._reading = threading.Lock()
        self._skew_told = False

    def now(self) -> dt.datetime:
        if _elapsed() >= self._next_read:
            self._read_if_free()
        anchor = self._anchor
        if anchor is None:
            return self._fallback.now()
        reference, read_at = anchor
        return reference + dt.timedelta(seconds=_elapsed() - read_at)

    def _read_if_free(self) -> None:
        # One thread reads; the others go on with the last reading meanwhile.
        if not self._reading.acquire(blocking=False):
            return
        try:
            if _elapsed() >= self._next_read:
                answered = self.read_reference()
                wait = self._every if answered else self._retry_after
                self._next_read = _elapsed() + wait
        finally:
            self._reading.release()

    def read_reference(self) -> bool:
        """Read the reference clock; False if it did not answer (the last reading stays).

        Read twice, and the reading with the shorter round trip kept: the first may have
        opened a connection, and a reading is placed halfway through its round trip, so a
        slow first one put this process's clock ahead by half the connection's set-up."""
        best: tuple[dt.datetime, float, float] | None = None
        for _ in range(2):
            before = _elapsed()
            try:
                reference = utc(self._read())
            except Exception as exc:
                log.warning("could not read the database server's clock: %s", exc)
                break
            after = _elapsed()
            if best is None or after - before < best[2]:
                # Taken halfway through the round trip: off by at most half of it.
                best = (reference, (before + after) / 2, after - before)
        if best is None:
            return False
        reference, read_at, _ = best
        skew = (reference - self._fallback.now()).total_seconds() + (_elapsed() - read_at)
        if abs(skew) >= 1 and not self._skew_told:
            self._skew_told = True
            log.warning(
                "this host's clock is %.1f s %s the database server's; the database's is used",
                abs(skew),
                "behind" if skew > 0 else "ahead of",
            )
        self._anchor = (reference, read_at)
        return True


class FrozenClock:
    """A clock that only moves when told to; for unit tests in one process."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = utc(start)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta


class OffsetFileClock:
    """Wall clock plus an offset in seconds read from a file, shared by every process.

    Tests advance time for a running worker by writing a larger offset to the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> dt.timedelta:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return dt.timedelta(0)
        return dt.timedelta(seconds=float(text or 0))

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset()

    def advance(self, delta: dt.timedelta) -> None:
        total = self.offset() + delta
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(total.total_seconds()))
        tmp.replace(self.path)


def clock_from_setting(value: str, read_database: Callable[[], dt.datetime] | None = None) -> Clock:
    """`database` (the database server's clock, read with `read_database`; the system clock
    when there is none to read: SQLite is on this host), `system`, or `file:/path` for a
    shared offset clock (tests, demos)."""
    if value == "database":
        return ReferenceClock(read_database) if read_database is not None else SystemClock()
    if value == "system":
        return SystemClock()
    if value.startswith("file:"):
        return OffsetFileClock(Path(value.removeprefix("file:")))
    raise ValueError(f"unknown clock {value!r}: expected 'database', 'system' or 'file:/path'")
