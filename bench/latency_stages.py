"""bench.latency's time split by stage: the stamps of one event, from request to the email's
step recorded, and the six stages between consecutive ones.

The stamps come from four clocks, all this host's wall clock: the load's and the sink's
(perf_counter, turned into epoch seconds), the engine's (the bench runs its processes with
AUTOMATIONS_CLOCK=system, so the API and the worker read the same clock, not each its own
reading of the database server's), and the worker's note of its task's return
(bench/latency_worker.py). Stages end where the next begins, so per event they add up to the
request → step recorded time exactly; a stage measured between two processes' stamps can be
a little below zero (the worker claims the step before the load has read the 202 that says
it was published): such values are kept as they are, and counted.

A prefork worker's claim commits with the outbox row, in `render`; a solo worker's
(`--pool solo`) commits on its own first, in `claim`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

# The environment variable naming the directory where the workers note their tasks' returns.
RETURNS_ENV = "BENCH_LATENCY_RETURNS"


@dataclass(frozen=True)
class Stamps:
    """One event's moments in epoch seconds, in order; each stage runs from one to the next."""

    sent: float  # the load: just before the request went out
    answered: float  # the load: the 202 arrived (ingestion committed, step published)
    claimed: float  # run_steps.claimed_at: the worker begins its claim of the email step
    making: float  # outbox.created_at: the step claimed, the email's making begins
    mail_from: float  # the sink: MAIL FROM (the claim transaction committed, MIME built)
    accepted: float  # the sink: the message accepted
    recorded: float  # the worker: its task returned, the step's outcome committed


# Stage: what it covers. The stages run between consecutive stamps, in this order.
STAGES = {
    "api": "request → 202 (ingestion committed, step published)",
    "queue": "202 → the worker begins the email step's claim",
    "claim": "claim statement, run context → the email's making begins",
    "render": "template read, render, outbox row, commit → SMTP MAIL FROM",
    "smtp": "SMTP transaction (MAIL FROM → message accepted)",
    "record": "message accepted → the step's outcome committed, task returned",
}


def split(events: Iterable[Stamps]) -> dict[str, list[float]]:
    """Each stage's durations in milliseconds, one per event, in STAGES' order."""
    names = [field.name for field in fields(Stamps)]
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    for stamps in events:
        moments = [getattr(stamps, name) for name in names]
        for stage, began, ended in zip(STAGES, moments[:-1], moments[1:], strict=True):
            stages[stage].append((ended - began) * 1000)
    return stages


def read_returns(directory: Path, step_key: str) -> dict[str, float]:
    """When each run's `step_key` task returned, by run id (its first return if several)."""
    returned: dict[str, float] = {}
    for path in sorted(directory.glob("*.txt")):
        for line in path.read_text().splitlines():
            run_id, key, at = line.split()
            if key == step_key:
                returned.setdefault(run_id, float(at))
    return returned
