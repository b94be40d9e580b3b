"""The fault lab's waits give up when nothing moves, not after a fixed time (a slow host moves)."""

from __future__ import annotations

import itertools
import time

from bench.faultlab.driver import Moving


def ticks_until_stalled(moving: Moving) -> float:
    started = time.monotonic()
    while not moving.stalled():
        time.sleep(0.005)
    return time.monotonic() - started


def test_a_wait_where_nothing_moves_gives_up_after_its_patience() -> None:
    moving = Moving(0.1, lambda: 7, every=0.01)
    assert 0.1 <= ticks_until_stalled(moving) < 0.4
    assert moving.why().startswith("nothing moved for")


def test_a_wait_that_moves_outlasts_its_patience_up_to_a_bound() -> None:
    counter = itertools.count()
    moving = Moving(0.1, lambda: next(counter), every=0.01)
    waited = ticks_until_stalled(moving)
    assert Moving.OVERALL * 0.1 <= waited < Moving.OVERALL * 0.1 + 0.3
    assert moving.why().startswith("still moving after")
