"""The answer of `GET /automations/{id}/metrics` (ours: Resend has no metrics API)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.shapes import Answer, Id, Timestamp
from engine.metrics import Granularity


class RunCounts(Answer):
    total: int
    by_status: dict[str, int] = Field(description="Runs started in the window, by run status")


class StepCounts(Answer):
    type: str
    reached: int
    completed: int
    failed: int
    skipped: int


class Durations(Answer):
    """Seconds from start to end of the runs that finished by themselves; null without any."""

    finished_runs: int
    p50: float | None
    p90: float | None
    p99: float | None


class EmailCounts(Answer):
    sent: int
    skipped_unsubscribed: int


class RecoveryCounts(Answer):
    """How operators recovered the window's runs (our addition)."""

    retried_runs: int = Field(description="Runs retried at least once")
    retries: int = Field(description="Retries in all")
    replays: int = Field(description="Runs that replay another run")


class SeriesBucket(Answer):
    start: Timestamp
    runs_started: int
    by_status: dict[str, int]


class AutomationMetrics(Answer):
    """Counts over [start, end), per step and per bucket of `granularity`."""

    object: Literal["automation_metrics"] = "automation_metrics"
    automation_id: Id
    start: Timestamp
    end: Timestamp
    granularity: Granularity
    runs: RunCounts
    steps: dict[str, StepCounts] = Field(description="Keyed by step key, in graph order")
    duration_seconds: Durations
    emails: EmailCounts
    recovery: RecoveryCounts
    series: list[SeriesBucket]
