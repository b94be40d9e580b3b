"""Row ids are version 7 UUIDs: their creation time first, in order, with random bits after."""

from __future__ import annotations

import time
import uuid

import pytest

from models.ids import new_id


def _millis(value: uuid.UUID) -> int:
    return value.int >> 80


def test_an_id_is_a_version_7_uuid_of_its_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= _millis(made) <= after


def test_ids_made_one_after_another_are_in_order_and_distinct() -> None:
    made = [new_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    # Same millisecond fraction (12 bits) may repeat; the time never goes back.
    assert [_millis(one) for one in made] == sorted(_millis(one) for one in made)
    assert made[0] < made[-1]


def test_the_fraction_of_a_millisecond_orders_ids_within_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([1_700_000_000_000_100_000, 1_700_000_000_000_900_000])
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    early, late = new_id(), new_id()
    assert _millis(early) == _millis(late) == 1_700_000_000_000
    assert early < late
