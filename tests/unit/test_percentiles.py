"""The one percentile definition: nearest rank over a fixed log-scale histogram."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from engine.percentiles import BOUNDS, BUCKETS, RATIO, bucket_of, middle, nearest_rank, percentiles


def exact_nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered) - 1e-9), 1) - 1]


def histogram(values: list[float]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for value in values:
        counts[bucket_of(value)] = counts.get(bucket_of(value), 0) + 1
    return counts


def test_buckets_are_a_fixed_log_scale() -> None:
    assert len(BOUNDS) == BUCKETS - 1
    assert bucket_of(0.0) == 0 and bucket_of(-1.0) == 0 and bucket_of(0.0009) == 0
    assert bucket_of(0.001) == 1
    assert bucket_of(BOUNDS[10]) == 11 and bucket_of(BOUNDS[10] * 0.999999) == 10
    assert all(b / a == pytest.approx(RATIO) for a, b in itertools.pairwise(BOUNDS))
    assert bucket_of(10.0**12) == BUCKETS - 1  # the open top bucket
    assert middle(0) == 0.0005


def test_nearest_rank_is_a_measured_value_within_the_bucket_precision() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(2, 2) for _ in range(2001)]
    counts = histogram(values)
    for q in (0.01, 0.5, 0.9, 0.99, 1.0):
        assert nearest_rank(counts, q) == pytest.approx(exact_nearest_rank(values, q), rel=0.045)


def test_small_samples() -> None:
    assert nearest_rank({}, 0.5) is None
    assert percentiles({}) == {"p50": None, "p90": None, "p99": None}
    one = histogram([7.0])
    assert percentiles(one) == {"p50": middle(bucket_of(7.0))} | {
        "p90": middle(bucket_of(7.0)),
        "p99": middle(bucket_of(7.0)),
    }
    # Four quick runs and a slow one: p50 is a quick one, p90 and p99 the slow one.
    five = histogram([0.01, 0.02, 0.02, 0.03, 3600.0])
    assert nearest_rank(five, 0.5) == pytest.approx(0.02, rel=0.045)
    assert nearest_rank(five, 0.9) == pytest.approx(3600.0, rel=0.045)
    # 100 values: p99 is the 99th, not the 100th (ceil(0.99 * 100) without float noise).
    hundred = histogram([float(v) for v in range(1, 101)])
    assert nearest_rank(hundred, 0.99) == pytest.approx(99.0, rel=0.045)
