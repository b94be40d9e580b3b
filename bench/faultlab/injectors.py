"""Fault injectors: each a thread that strikes at random moments until told to stop."""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable

from bench.faultlab.lab import Lab

log = logging.getLogger(__name__)


class Injector:
    """Calls `strike` every `low`..`high` seconds (random), counting what it did."""

    def __init__(
        self,
        name: str,
        strike: Callable[[], str | None],
        rng: random.Random,
        low: float,
        high: float,
    ) -> None:
        self.name = name
        self.strike = strike
        self.rng = random.Random(rng.random())
        self.low, self.high = low, high
        self.done: Counter[str] = Counter()
        self.limit: int | None = None  # at most this many strikes (the short form's budget)
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"inject-{name}", daemon=True)

    @property
    def count(self) -> int:
        return sum(self.done.values())

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        # The first strike comes early, so that even a short load is hit while it starts.
        pause = self.rng.uniform(0.1, self.low)
        while not self._stop.wait(pause):
            if self.limit is not None and self.count >= self.limit:
                return
            self._strike_once()
            pause = self.rng.uniform(self.low, self.high)

    def _strike_once(self) -> None:
        try:
            what = self.strike()
        except Exception:  # an injector that fails must not end the run; it is reported
            self.errors += 1
            log.warning("injector %s failed", self.name, exc_info=True)
            return
        if what:
            self.done[what] += 1

    def stop(self) -> None:
        """Stop striking; one that never struck (a load too short for it) strikes now."""
        self._stop.set()
        self._thread.join(timeout=90)
        if self.count == 0:
            self._strike_once()


def sigkill(lab: Lab, rng: random.Random, low: float = 0.5, high: float = 2.0) -> Injector:
    """SIGKILL a worker's pool child or the whole worker, then restart it."""
    picker = random.Random(rng.random())
    return Injector("sigkill", lambda: lab.pool.kill(picker), rng, low, high)


def flushall(lab: Lab, rng: random.Random, low: float = 0.5, high: float = 2.0) -> Injector:
    def strike() -> str:
        lab.redis.flushall()
        return "flushall"

    return Injector("flushall", strike, rng, low, high)


def redis_restart(lab: Lab, rng: random.Random, low: float = 2.0, high: float = 5.0) -> Injector:
    downtime = random.Random(rng.random())

    def strike() -> str:
        lab.redis.restart(down_seconds=downtime.uniform(0.2, 1.0))
        return "restart"

    return Injector("redis-restart", strike, rng, low, high)


def pg_cut(lab: Lab, rng: random.Random, low: float = 0.3, high: float = 1.5) -> Injector:
    def strike() -> str | None:
        return "cut" if lab.cutter.cut() else None

    return Injector("pg-terminate", strike, rng, low, high)


def pause(lab: Lab, rng: random.Random, low: float = 0.3, high: float = 1.0) -> Injector:
    """SIGSTOP a worker past its lease, then SIGCONT it: it wakes up to a step taken over."""
    picker = random.Random(rng.random())
    lease = lab.timing.lease_seconds

    def strike() -> str | None:
        return lab.pool.pause(picker, lease + picker.uniform(0.5, 2.0))

    return Injector("pause", strike, rng, low, high)
