"""Per-automation, per-hour counters that the metrics read instead of every run and step.

Maintained in the transaction of each state change (engine/store/rollup.py), never by a batch
job. `hour` is whole hours since the Unix epoch (UTC): the same integer on every database.
`shard` spreads one hour's counters over a few rows, so that concurrent transactions do not all
wait for the same row lock; readers sum over shards. Every counter is kept twice: per hour
(`span` 1) and per UTC day (`span` 24, `hour` the day's first hour), so that a 90-day window
reads 90 rows where it can, not 2,160.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Integer, SmallInteger, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from models.tables import Base


def _key_uuid() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True)


def _key_int() -> Mapped[int]:
    return mapped_column(Integer, primary_key=True)


def _key_span() -> Mapped[int]:
    return mapped_column(SmallInteger, primary_key=True)


def _counter() -> Mapped[int]:
    return mapped_column(BigInteger, default=0, server_default=text("0"), nullable=False)


class RunRollup(Base):
    """Runs of an automation by the hour they were created in, by their current status; runs
    by the hour they ended in; operators' retries and replays of the hour's runs."""

    __tablename__ = "run_rollups"

    automation_id: Mapped[uuid.UUID] = _key_uuid()
    span: Mapped[int] = _key_span()
    hour: Mapped[int] = _key_int()
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    running: Mapped[int] = _counter()
    completed: Mapped[int] = _counter()
    failed: Mapped[int] = _counter()
    cancelled: Mapped[int] = _counter()
    skipped: Mapped[int] = _counter()
    # Runs that ended in this hour (whenever they were created), by how they ended.
    ended_completed: Mapped[int] = _counter()
    ended_failed: Mapped[int] = _counter()
    ended_cancelled: Mapped[int] = _counter()
    ended_skipped: Mapped[int] = _counter()
    retried_runs: Mapped[int] = _counter()
    retries: Mapped[int] = _counter()
    replays: Mapped[int] = _counter()


class StepRollup(Base):
    """Step rows of the runs created in the hour, per step key: how many exist, how many ended
    in each way (a step back in flight after a retry is taken off its ending)."""

    __tablename__ = "step_rollups"

    automation_id: Mapped[uuid.UUID] = _key_uuid()
    span: Mapped[int] = _key_span()
    hour: Mapped[int] = _key_int()
    step_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    step_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    steps: Mapped[int] = _counter()
    completed: Mapped[int] = _counter()
    failed: Mapped[int] = _counter()
    cancelled: Mapped[int] = _counter()
    skipped_unsubscribed: Mapped[int] = _counter()
    skipped_branch_not_taken: Mapped[int] = _counter()
    skipped_contact_deleted: Mapped[int] = _counter()
    # Rows created skipped (a branch not taken, the steps after the contact's deletion): the
    # run never reached them. A step skipped when its run got to it was reached.
    unreached: Mapped[int] = _counter()


class DurationRollup(Base):
    """How many of the runs created in the hour (span 1) or in the UTC day starting at `hour`
    (span 24) that ended by themselves took a time in each bucket of engine/percentiles.py's
    fixed log scale. Day rows let a 90-day window read 90 rows per bucket, not 2,160."""

    __tablename__ = "duration_rollups"

    automation_id: Mapped[uuid.UUID] = _key_uuid()
    span: Mapped[int] = _key_span()
    hour: Mapped[int] = _key_int()
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    runs: Mapped[int] = _counter()
