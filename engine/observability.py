"""A snapshot of the runtime for `/metrics`, read from the database so every process agrees."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from engine.store import health as health_store

DURATION_WINDOW = dt.timedelta(minutes=15)
QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class Snapshot:
    runs_by_status: dict[str, int]
    emails_by_status: dict[str, int]
    queue_lag_seconds: float
    # step type -> {quantile: seconds}, over steps finished in the last DURATION_WINDOW
    step_duration_quantiles: dict[str, dict[float, float]] = field(default_factory=dict)
    step_counts: dict[str, int] = field(default_factory=dict)


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(round(q * len(sorted_values) + 0.5) - 1, 0)
    return sorted_values[min(rank, len(sorted_values) - 1)]


def snapshot(session: Session, *, now: dt.datetime) -> Snapshot:
    oldest = health_store.oldest_due(session, now)
    durations: dict[str, list[float]] = defaultdict(list)
    for step_type, started, completed in health_store.recent_step_durations(
        session, now - DURATION_WINDOW
    ):
        durations[step_type].append((completed - started).total_seconds())
    return Snapshot(
        runs_by_status=health_store.runs_by_status(session),
        emails_by_status=health_store.emails_by_status(session),
        queue_lag_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        step_duration_quantiles={
            kind: {q: quantile(sorted(values), q) for q in QUANTILES}
            for kind, values in durations.items()
        },
        step_counts={kind: len(values) for kind, values in durations.items()},
    )
