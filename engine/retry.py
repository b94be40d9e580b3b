"""Retry policy for transient step failures: a pure object that turns a failure into a decision."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base: dt.timedelta = dt.timedelta(seconds=10)
    cap: dt.timedelta = dt.timedelta(hours=1)

    def backoff(self, attempt: int) -> dt.timedelta:
        """Delay before the attempt after `attempt` (1-based): base * 2^(attempt-1), capped."""
        delay: dt.timedelta = self.base * (2 ** max(attempt - 1, 0))
        return min(delay, self.cap)

    def next_attempt_at(self, attempt: int, now: dt.datetime) -> dt.datetime | None:
        """When to try again after `attempt` failed transiently; None once attempts are spent."""
        if attempt >= self.max_attempts:
            return None
        return now + self.backoff(attempt)
