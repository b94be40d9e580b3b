"""When the sweeper may send a step's message again: a pure policy, exponential per step.

A step sent to the broker and not claimed within `stale_after` is either lost or still queued
behind a backlog; the sweeper cannot tell which. Sending it again every tick would multiply a long
backlog, so each re-send of the same step waits twice as long as the one before, up to a cap. A
normal dispatch (the step created, or promoted from a timer) starts the series again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class RedispatchPolicy:
    stale_after: dt.timedelta
    max_backoff: dt.timedelta

    def levels(self) -> int:
        """How many re-sends double the wait before it reaches the cap."""
        level = 0
        while self.stale_after * 2**level < self.max_backoff:
            level += 1
        return level

    def backoff(self, redispatches: int) -> dt.timedelta:
        """How long a step re-sent `redispatches` times is given before it is sent again."""
        delay: dt.timedelta = self.stale_after * 2 ** min(redispatches, self.levels())
        return max(min(delay, self.max_backoff), self.stale_after)

    def sent_before(self, now: dt.datetime) -> list[dt.datetime]:
        """Per number of re-sends n, the time before which the step's last message counts as lost.

        The last entry covers every n from its index on (the cap), so the list stays short and
        the store's query is one range test per entry.
        """
        return [now - self.backoff(n) for n in range(self.levels() + 1)]

    @staticmethod
    def after_stale(redispatches: int) -> int:
        """The step's count once an unclaimed step is sent again."""
        return redispatches + 1

    @staticmethod
    def after_lease_expiry(
        redispatches: int,
        *,
        dispatched_at: dt.datetime | None,
        lease_expires_at: dt.datetime | None,
    ) -> int:
        """The step's count once a step whose worker's lease ran out is sent again.

        The first re-send after the lease ran out starts a new series: the re-sends counted
        before the step was claimed belong to an earlier message, not to this recovery.
        """
        if dispatched_at is None or lease_expires_at is None or dispatched_at < lease_expires_at:
            return 1
        return redispatches + 1
