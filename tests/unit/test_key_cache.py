"""The API key cache: fresh for about a second, one lookup per key however many ask at once."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from api.key_cache import KEY_CACHE_SECONDS, KeyCache
from engine.api_keys import Caller

CALLER = Caller(uuid.uuid4(), "full_access")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_looked_up_again_after_about_a_second() -> None:
    assert KEY_CACHE_SECONDS <= 1.0
    clock, lookups = Clock(), []
    cache = KeyCache(clock=clock)

    def lookup() -> Caller | None:
        lookups.append(1)
        return CALLER if len(lookups) == 1 else None  # deleted after the first lookup

    assert cache.resolve("digest", lookup) == CALLER
    clock.now += KEY_CACHE_SECONDS - 0.01
    assert cache.resolve("digest", lookup) == CALLER
    assert len(lookups) == 1
    clock.now += 0.02
    assert cache.resolve("digest", lookup) is None
    assert len(lookups) == 2


def test_a_burst_of_misses_costs_one_lookup() -> None:
    cache, lookups = KeyCache(), []
    arrived = threading.Barrier(16)

    def slow_lookup() -> Caller | None:
        lookups.append(1)
        time.sleep(0.3)  # a slow database: the other threads ask meanwhile
        return CALLER

    def request() -> Caller | None:
        arrived.wait(5)
        return cache.resolve("digest", slow_lookup)

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(request) for _ in range(16)]
        assert all(f.result(timeout=10) == CALLER for f in futures)
    assert len(lookups) == 1


def test_unknown_keys_are_not_remembered() -> None:
    cache, lookups = KeyCache(), []

    def lookup() -> Caller | None:
        lookups.append(1)
        return None

    assert cache.resolve("wrong", lookup) is None
    assert cache.resolve("wrong", lookup) is None
    assert len(lookups) == 2


def test_a_refused_lookup_leaves_the_cache_usable() -> None:
    cache = KeyCache()

    def refused() -> Caller | None:
        raise RuntimeError("over the limit")

    with pytest.raises(RuntimeError):
        cache.resolve("digest", refused)
    assert cache.resolve("digest", lambda: CALLER) == CALLER
