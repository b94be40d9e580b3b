"""Row ids: version 7 UUIDs (RFC 9562), which begin with their creation time.

A version 4 id lands anywhere in its primary key's index, and in every index that leads with it
(a run's steps, an event's or a run's contact): each insert touches a page of its own, which
PostgreSQL writes whole to its WAL the first time after each checkpoint, and keeps in its cache
only while the whole index fits. A version 7 id lands at the index's right edge, beside the ids
made just before it. Measured in docs/benchmarks-log.md ("Ids in time order").

Layout (RFC 9562, 5.7 and 6.2 method 3): 48 bits of Unix time in milliseconds, the version, 12
bits of the millisecond's fraction (ids of one process made in one millisecond keep their
order), the variant, 62 random bits. An id says when its row was made, to the millisecond, to
whoever holds it; nothing in this project is secret by its id (docs/security.md).

`UUID7_SQL` is the same layout drawn by PostgreSQL (which has `uuidv7()` only from version 18),
for rows a statement inserts itself: the time in milliseconds, then random bits.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RANDOM = (1 << 62) - 1


def new_id() -> uuid.UUID:
    """A version 7 UUID for a new row."""
    ns = time.time_ns()
    ms, fraction = divmod(ns, 1_000_000)
    sub_ms = fraction * 4096 // 1_000_000  # 12 bits
    random = int.from_bytes(os.urandom(8)) & _RANDOM
    return uuid.UUID(int=ms << 80 | _VERSION | sub_ms << 64 | _VARIANT | random)


# gen_random_uuid() is a version 4 UUID: its first 48 bits are replaced by the time in
# milliseconds, and its version nibble 0100 becomes 0111 (bits 52 and 53 of the bytes, counted
# from the right of each byte). Its variant bits stay.
UUID7_SQL = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing"
    " substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)"
    " FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid"
)
