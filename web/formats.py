"""How the dashboard writes times, durations, counts and JSON for people."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any


def utc_text(moment: dt.datetime | None, *, seconds: bool = True) -> str:
    """`2026-10-01 12:00:05` in UTC; an em dash for no time."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    pattern = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return moment.astimezone(dt.UTC).strftime(pattern)


def short_id(value: object) -> str:
    """An id's last 8 hex digits, which tell runs apart: a version 7 id begins with its time,
    the same for every id made within a minute (models/ids.py); its end is random."""
    return str(value)[-8:]


def iso(moment: dt.datetime | None) -> str:
    """ISO 8601 in UTC for machines (data attributes, <time datetime>); empty for no time."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def human_duration(seconds: float | None) -> str:
    """`850 ms`, `4.2 s`, `3 min 4 s`, `2 h 5 min`, `3 d 4 h`; an em dash for none."""
    if seconds is None:
        return "—"
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


def elapsed(
    start: dt.datetime | None, end: dt.datetime | None, now: dt.datetime | None = None
) -> float | None:
    """Seconds from start to end (or to now while unfinished); None without a start."""
    if start is None:
        return None
    until = end or now
    if until is None:
        return None
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    if until.tzinfo is None:
        until = until.replace(tzinfo=dt.UTC)
    return (until - start).total_seconds()


def pretty_json(value: Any) -> str:
    """Indented JSON for a <pre>; escaping is the template's job."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def count_text(value: int) -> str:
    """1234567 as `1,234,567`."""
    return f"{value:,}"
