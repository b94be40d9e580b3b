"""What a producer's message shows outside the database: in Flower's task list and in the
worker's log. The event's name and ids, not the person: an address and a payload are `***`.

A producer's Celery writes the message's `kwargsrepr` header in full (the worker's task events
carry it to Flower as is); the worker rewrites it on arrival (tasks/poison.py)."""

from __future__ import annotations

from typing import Any

HIDDEN = frozenset({"email", "payload"})
MASK = "***"
# As Celery's own `kwargsrepr` (app.amqp's kwargsrepr_maxsize).
MAX_CHARS = 1024
# What a message shows of its arguments is cut at MAX_CHARS. So that the work before the cut is
# bounded too, at most this many values are copied (containers and what they hold: a batch's
# first 32 events, past MAX_CHARS), and a text is cut at MAX_CHARS. Celery's saferepr, used
# before, writes its text a piece at a time: with the masking, 0.32 ms of the worker's parent
# per batch of 100 events, 0.024 ms per single event (now 0.08 and 0.003 ms).
SHOWN_VALUES = 96
CUT = "..."


class _Cut:
    """Where a list or dict was cut: shown as `...`, as in reprlib."""

    def __repr__(self) -> str:
        return CUT


_MORE = _Cut()


def shown_kwargs(kwargs: dict[str, Any]) -> str:
    """The message's keyword arguments as Flower and the log may show them."""
    left = SHOWN_VALUES

    def masked(value: Any) -> Any:
        """`value` with HIDDEN keys' values masked, cut once SHOWN_VALUES are copied."""
        nonlocal left
        left -= 1
        if isinstance(value, dict):
            shown: dict[Any, Any] = {}
            for key, item in value.items():
                if left <= 0:
                    shown[_MORE] = _MORE
                    break
                hidden = key in HIDDEN and item is not None
                shown[_cut(key)] = MASK if hidden else masked(item)
            return shown
        if isinstance(value, list | tuple):
            items: list[Any] = []
            for item in value:
                if left <= 0:
                    items.append(_MORE)
                    break
                items.append(masked(item))
            return items
        return _cut(value)

    text = repr(masked(kwargs))
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - len(CUT)] + CUT


def _cut(value: Any) -> Any:
    return value[:MAX_CHARS] if isinstance(value, str | bytes) else value
