"""What a producer's message shows outside the database: in Flower's task list and in the
worker's log. The event's name and ids, not the person: an address and a payload are `***`.

A producer's Celery writes the message's `kwargsrepr` header in full (the worker's task events
carry it to Flower as is); the worker rewrites it on arrival (tasks/poison.py)."""

from __future__ import annotations

from typing import Any

from celery.utils.saferepr import saferepr

HIDDEN = frozenset({"email", "payload"})
MASK = "***"
# As Celery's own `kwargsrepr` (app.amqp's kwargsrepr_maxsize).
MAX_CHARS = 1024


def shown_kwargs(kwargs: dict[str, Any]) -> str:
    """The message's keyword arguments as Flower and the log may show them."""
    return str(saferepr(_masked(kwargs), MAX_CHARS))


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: MASK if key in HIDDEN and item is not None else _masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value
