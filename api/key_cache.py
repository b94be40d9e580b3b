"""Verified API keys, remembered for about a second by each API process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from engine.api_keys import Caller

# How long a process trusts a key it verified. A key deleted anywhere (another process, the
# CLI, the database) stops working everywhere within this, without any message between
# processes; and a burst of requests costs one lookup per key per process per interval.
KEY_CACHE_SECONDS = 1.0
MAX_ENTRIES = 10_000


class KeyCache:
    """Key digest -> caller, each entry fresh for `ttl` seconds; one lookup at a time per key."""

    def __init__(
        self, ttl: float = KEY_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self._clock = ttl, clock
        self._entries: dict[str, tuple[Caller, float]] = {}
        self._lookups: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def resolve(self, digest: str, lookup: Callable[[], Caller | None]) -> Caller | None:
        """The cached caller, else `lookup()`'s (cached when found). Concurrent misses of one
        key wait for the first lookup instead of each querying the database."""
        found = self._fresh(digest)
        if found is not None:
            return found
        with self._lock:
            pending = self._lookups.setdefault(digest, threading.Lock())
        try:
            with pending:
                found = self._fresh(digest)
                if found is None:
                    found = lookup()
                    if found is not None:
                        self._put(digest, found)
        finally:
            with self._lock:
                self._lookups.pop(digest, None)
        return found

    def fresh(self, digest: str) -> Caller | None:
        """The cached caller if still fresh; no lookup, no waiting on one (for the event loop)."""
        return self._fresh(digest)

    def clear(self) -> None:
        """Forget every key at once, after one is deleted through this process."""
        with self._lock:
            self._entries.clear()

    def _fresh(self, digest: str) -> Caller | None:
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def _put(self, digest: str, caller: Caller) -> None:
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                now = self._clock()
                self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
            self._entries[digest] = (caller, self._clock() + self.ttl)
