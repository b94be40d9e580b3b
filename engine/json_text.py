"""JSON text of what the runtime writes itself: rows handed to the database as one JSON
document, the rollup's deltas, task messages, the 202 answer of an event.

orjson encodes these five to ten times faster than the json module: a batch of 100 events spent
a quarter of its transaction's Python time in `json.dumps` (bench/profile_ingest.py). The text
means the same to every reader (compact, UTF-8 rather than `\\u` escapes, UUIDs as their
canonical string, floats in their shortest form). What orjson refuses, an integer beyond 64
bits in a payload, goes through the json module, so any value the API accepted is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

# Datetimes go to `default`, which decides their text (and refuses a naive one where the
# column is UTC); orjson would write a naive datetime without an offset.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """Compact JSON text of `value`; `default` turns what JSON has no type for into what it has
    (orjson writes UUIDs itself; datetimes always go to `default`)."""
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        # An integer beyond 64 bits, or what `default` refused (which refuses it again here).
        return json.dumps(value, default=default, separators=(",", ":"), ensure_ascii=False)
