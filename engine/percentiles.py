"""Durations on a fixed log scale, and the one percentile definition every metric uses.

A duration is counted in a bucket, never kept itself, so that percentiles over any number of
runs are computed from a few hundred counters summed over hours (models/rollups.py).

Buckets: 0 is [0, 1 ms); bucket i >= 1 is [1 ms * R**(i-1), 1 ms * R**i) with R = 2**(1/8),
eight buckets per doubling; the last one is open-ended (from about 2.2 years). A bucket is
reported as the geometric middle of its bounds, so a percentile is within R**(1/2) - 1 = 4.4 %
of the true value (bucket 0 is reported as 0.5 ms).

Percentile: nearest rank. The q-percentile of n values is the k-th smallest, k = ceil(q * n)
(at least 1): a value that was measured (up to its bucket's precision), never an interpolation
between two runs.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping

SMALLEST = 0.001  # seconds: the upper bound of bucket 0
PER_DOUBLING = 8
RATIO = 2 ** (1 / PER_DOUBLING)
BUCKETS = 8 * 36 + 1  # up to 2**36 ms, about 2.2 years
# Lower bounds of buckets 1 .. BUCKETS - 1: a duration's bucket is how many of them it reaches.
BOUNDS: tuple[float, ...] = tuple(SMALLEST * RATIO**i for i in range(BUCKETS - 1))
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def bucket_of(seconds: float) -> int:
    """The bucket a duration falls in (negative durations, from clock skew, count as 0)."""
    return bisect_right(BOUNDS, seconds)


def middle(bucket: int) -> float:
    """The value a bucket stands for: the geometric middle of its bounds."""
    if bucket <= 0:
        return SMALLEST / 2
    if bucket >= len(BOUNDS):
        return BOUNDS[-1]
    return round(math.sqrt(BOUNDS[bucket - 1] * BOUNDS[bucket]), 6)


def nearest_rank(counts: Mapping[int, int], q: float) -> float | None:
    """The q-percentile (nearest rank) of the durations counted per bucket; None if none."""
    total = sum(counts.values())
    if total <= 0:
        return None
    # The epsilon keeps 0.99 * 100 (99.00000000000001 in floating point) at rank 99.
    rank = max(math.ceil(q * total - 1e-9), 1)
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return middle(bucket)
    return middle(max(counts))


def percentiles(counts: Mapping[int, int]) -> dict[str, float | None]:
    """p50, p90 and p99 of the durations counted per bucket."""
    return {name: nearest_rank(counts, q) for name, q in QUANTILES.items()}
