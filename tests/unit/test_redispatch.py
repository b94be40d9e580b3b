"""The sweeper's re-send backoff: doubling per re-send of a step, capped, reset per lease."""

from __future__ import annotations

import datetime as dt

from engine.redispatch import RedispatchPolicy

NOW = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)


def seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def test_each_resend_waits_twice_as_long_up_to_the_cap() -> None:
    policy = RedispatchPolicy(stale_after=seconds(30), max_backoff=seconds(600))
    waits = [policy.backoff(n).total_seconds() for n in range(8)]
    assert waits == [30, 60, 120, 240, 480, 600, 600, 600]
    assert policy.backoff(10_000) == seconds(600), "a huge count neither overflows nor grows"


def test_one_threshold_per_count_and_the_last_for_every_higher_count() -> None:
    policy = RedispatchPolicy(stale_after=seconds(30), max_backoff=seconds(600))
    assert policy.levels() == 5
    assert policy.sent_before(NOW) == [NOW - seconds(wait) for wait in (30, 60, 120, 240, 480, 600)]


def test_a_cap_below_stale_after_means_no_backoff() -> None:
    policy = RedispatchPolicy(stale_after=seconds(30), max_backoff=seconds(10))
    assert policy.levels() == 0
    assert policy.backoff(3) == seconds(30)
    assert policy.sent_before(NOW) == [NOW - seconds(30)]


def test_a_lost_message_adds_one_resend() -> None:
    assert RedispatchPolicy.after_stale(0) == 1
    assert RedispatchPolicy.after_stale(4) == 5


def test_the_first_resend_after_a_lease_ran_out_starts_a_new_series() -> None:
    lease_end = NOW - seconds(5)
    before_claim = lease_end - seconds(120)
    first = RedispatchPolicy.after_lease_expiry(
        4, dispatched_at=before_claim, lease_expires_at=lease_end
    )
    assert first == 1
    never_sent = RedispatchPolicy.after_lease_expiry(
        4, dispatched_at=None, lease_expires_at=lease_end
    )
    assert never_sent == 1
    again = RedispatchPolicy.after_lease_expiry(
        1, dispatched_at=lease_end + seconds(1), lease_expires_at=lease_end
    )
    assert again == 2
