"""The rollup tables against a recount of every run and step, done in Python from the rows:
tests assert that what the engine kept transaction by transaction equals the truth."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.percentiles import bucket_of
from engine.store.rollup import hour_of, step_column
from models.rollups import DurationRollup, RunRollup, StepRollup
from models.tables import Run, RunStep

TIMED = {"completed", "failed", "skipped"}


def recount(session: Session) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every counter of the rollup, keyed without the shard, from the runs and steps."""
    runs: Counter[tuple[Any, ...]] = Counter()
    durations: Counter[tuple[Any, ...]] = Counter()
    owners = {}
    for run in session.scalars(select(Run)):
        hour = hour_of(run.created_at)
        owners[run.id] = (run.automation_id, hour)
        runs[(run.automation_id, hour, run.status)] += 1
        runs[(run.automation_id, hour, "retries")] += run.retries
        runs[(run.automation_id, hour, "retried_runs")] += 1 if run.retries else 0
        runs[(run.automation_id, hour, "replays")] += 1 if run.replay_of else 0
        if run.status != "running" and run.completed_at is not None:
            ended = hour_of(run.completed_at)
            runs[(run.automation_id, ended, f"ended_{run.status}")] += 1
            if run.status in TIMED:
                took = (run.completed_at - run.started_at).total_seconds()
                durations[(run.automation_id, hour, bucket_of(took))] += 1
    steps: Counter[tuple[Any, ...]] = Counter()
    for step in session.scalars(select(RunStep)):
        key = (*owners[step.run_id], step.step_key, step.step_type)
        steps[(*key, "steps")] += 1
        column = step_column(step.status, step.skip_reason)
        if column is not None:
            steps[(*key, column)] += 1
        if step.status == "skipped" and step.started_at is None:
            steps[(*key, "unreached")] += 1
    return _nonzero(runs=runs, steps=steps, durations=durations)


def rollup(session: Session) -> dict[str, Counter[tuple[Any, ...]]]:
    """The rollup tables' hour counters, summed over shards, zeros left out; the day counters
    minus the sum of their hours, where they differ (any such entry is a mismatch)."""
    found: dict[str, Counter[tuple[Any, ...]]] = {}
    for name, model, extra in (
        ("runs", RunRollup, ()),
        ("steps", StepRollup, ("step_key", "step_type")),
        ("durations", DurationRollup, ("bucket",)),
    ):
        key_names = {"automation_id", "span", "hour", "shard", *extra}
        counters = [c.name for c in model.__table__.columns if c.name not in key_names]
        hours: Counter[tuple[Any, ...]] = Counter()
        days: Counter[tuple[Any, ...]] = Counter()
        for row in session.scalars(select(model)):
            rest = tuple(getattr(row, k) for k in extra)
            for column in counters:
                value = getattr(row, column)
                day = (row.automation_id, row.hour - row.hour % 24, *rest, column, "day")
                if row.span == 1:
                    hours[(row.automation_id, row.hour, *rest, column)] += value
                    days[day] -= value
                else:
                    days[day] += value
        if name == "durations":  # one counter: keyed without its name, as the recount is
            hours = Counter({k[:-1]: v for k, v in hours.items()})
        hours.update(days)
        found[name] = hours
    return _nonzero(**found)


def _nonzero(**tables: Counter[tuple[Any, ...]]) -> dict[str, Counter[tuple[Any, ...]]]:
    """Zeros left out (a count that went up and down again), negatives kept: they are bugs."""
    return {name: Counter({k: v for k, v in c.items() if v}) for name, c in tables.items()}
