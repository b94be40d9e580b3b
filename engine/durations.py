"""Parse human durations such as "30 minutes" or "3 days" into timedeltas."""

import re
from datetime import timedelta

from engine.errors import InvalidInput

MAX_DURATION: timedelta = timedelta(days=30)

_UNITS: dict[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}

# ASCII digits only: str.isdigit() and \d would also accept other scripts' digits.
_DURATION = re.compile(r"([0-9]+) +(minute|hour|day|week)s?", re.IGNORECASE)

_HINT = 'use a whole number and a unit, e.g. "30 minutes", "1 hour", "3 days", "1 week"'


def parse_duration(
    text: object, *, field: str = "duration", maximum: timedelta = MAX_DURATION
) -> timedelta:
    """Parse "<positive integer> <unit>" into a timedelta of at most `maximum` (30 days)."""
    if not isinstance(text, str):
        raise InvalidInput(f"{text!r} is not a duration: {_HINT}", field=field)
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"{text!r} is not a duration: {_HINT}", field=field)
    digits, unit = match.group(1).lstrip("0"), _UNITS[match.group(2).lower()]
    if not digits:
        raise InvalidInput(f"{text!r} is not a duration: the number must be positive", field=field)
    # Compared before converting and multiplying: a number of thousands of digits is neither
    # an int Python converts nor one a timedelta holds.
    most = maximum // unit
    if len(digits) > len(str(most)) or int(digits) > most:
        shown = text if len(text) <= 40 else f"{text[:20]}...{text[-16:]}"
        longest = format_duration(maximum)
        raise InvalidInput(f"{shown!r} is longer than the maximum of {longest}", field=field)
    return int(digits) * unit


_SHOWN: tuple[tuple[str, timedelta], ...] = (
    ("day", timedelta(days=1)),
    ("hour", timedelta(hours=1)),
    ("minute", timedelta(minutes=1)),
    ("second", timedelta(seconds=1)),
)


def format_duration(value: timedelta) -> str:
    """A duration as people write it, largest unit first: "3 days 2 hours", "0 minutes"."""
    rest = max(value, timedelta(0))
    parts = []
    for name, unit in _SHOWN:
        amount, rest = divmod(rest, unit)
        if amount:
            parts.append(f"{amount} {name}{'' if amount == 1 else 's'}")
    return " ".join(parts) or "0 minutes"


def format_offset(value: timedelta) -> str:
    """A point in time counted from a start: "+1 day", "+0 minutes"."""
    return "+" + format_duration(value)
