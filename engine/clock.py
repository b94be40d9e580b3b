"""The only place that reads the wall clock; everything else takes `now` from a Clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Protocol

from engine.errors import InvalidInput


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


def clock_from_setting(value: str) -> Clock:
    """`system`, or `file:/path` for a shared offset clock (tests, demos)."""
    if value == "system":
        return SystemClock()
    if value.startswith("file:"):
        return OffsetFileClock(Path(value.removeprefix("file:")))
    raise ValueError(f"unknown clock {value!r}: expected 'system' or 'file:/path'")
