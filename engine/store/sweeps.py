"""The sweeper's reads: indexed by due time, so a tick costs what is due, not what waits."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, or_, select, text, tuple_, update
from sqlalchemy.orm import Session

from models.enums import STEP_CLAIMABLE, StepStatus
from models.tables import RunStep


@dataclass(frozen=True)
class DueStep:
    run_id: uuid.UUID
    step_key: str
    step_type: str
    due_at: dt.datetime | None
    dispatched_at: dt.datetime | None
    lease_expires_at: dt.datetime | None
    redispatch_count: int
    # The current claim, the worker deaths counted, and the claim whose death was counted last.
    attempt: int
    worker_losses: int
    lost_attempt: int | None


@dataclass(frozen=True)
class DispatchMark:
    """A step the sweeper sends, with the re-send count it carries from now on."""

    run_id: uuid.UUID
    step_key: str
    redispatch_count: int


def _select_due() -> tuple:  # type: ignore[type-arg]
    return (
        RunStep.run_id,
        RunStep.step_key,
        RunStep.step_type,
        RunStep.due_at,
        RunStep.dispatched_at,
        RunStep.lease_expires_at,
        RunStep.redispatch_count,
        RunStep.attempt,
        RunStep.worker_losses,
        RunStep.lost_attempt,
    )


def _last_sent_before(sent_before: Sequence[dt.datetime]) -> ColumnElement[bool]:
    """The step's last message went out before the time its re-send count allows.

    `sent_before[n]` is for a step re-sent n times; the last entry covers every higher count.
    Plain range tests on columns, so the scan of the partial index stays as it was.
    """
    *exact, capped = sent_before
    return or_(
        *(
            and_(RunStep.redispatch_count == count, RunStep.dispatched_at <= before)
            for count, before in enumerate(exact)
        ),
        and_(RunStep.redispatch_count >= len(exact), RunStep.dispatched_at <= capped),
    )


def steps_to_promote(session: Session, *, horizon_end: dt.datetime, limit: int) -> list[DueStep]:
    """Steps due before the horizon's end that no message has been sent for yet."""
    rows = session.execute(
        select(*_select_due())
        .where(
            RunStep.status.in_(STEP_CLAIMABLE),
            RunStep.due_at <= horizon_end,
            RunStep.dispatched_at.is_(None),
        )
        .order_by(RunStep.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [DueStep(*row) for row in rows]


def steps_overdue(
    session: Session,
    *,
    stale_before: dt.datetime,
    sent_before: Sequence[dt.datetime],
    limit: int,
) -> list[DueStep]:
    """Steps due and sent long enough ago, by their re-send count, but still not claimed.

    Their message is lost, or still queued behind a backlog; the oldest due come first.
    """
    rows = session.execute(
        select(*_select_due())
        .where(
            RunStep.status.in_(STEP_CLAIMABLE),
            RunStep.due_at <= stale_before,
            _last_sent_before(sent_before),
        )
        .order_by(RunStep.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [DueStep(*row) for row in rows]


def steps_abandoned(
    session: Session, *, now: dt.datetime, sent_before: Sequence[dt.datetime], limit: int
) -> list[DueStep]:
    """Steps claimed by a worker whose lease ran out: the worker died or hangs.

    Sent again at once the first time after the lease ran out, then with the same backoff as a
    lost message while no worker claims them.
    """
    rows = session.execute(
        select(*_select_due())
        .where(
            RunStep.status == StepStatus.RUNNING,
            RunStep.lease_expires_at < now,
            or_(
                RunStep.dispatched_at.is_(None),
                RunStep.dispatched_at < RunStep.lease_expires_at,
                _last_sent_before(sent_before),
            ),
        )
        .order_by(RunStep.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [DueStep(*row) for row in rows]


def count_lost_claims(session: Session, steps: Sequence[DueStep]) -> None:
    """Count the death of each step's current claim (the steps are locked by their read)."""
    if not steps:
        return
    keys = [(step.run_id, step.step_key) for step in steps]
    session.execute(
        update(RunStep)
        .where(tuple_(RunStep.run_id, RunStep.step_key).in_(keys))
        .values(worker_losses=RunStep.worker_losses + 1, lost_attempt=RunStep.attempt)
        .execution_options(synchronize_session=False)
    )


# PostgreSQL: the steps as three arrays joined on the primary key, one statement however many.
# (A row-value IN list of a thousand keys is planned as a thousand index scans OR-ed: ~100 ms.)
_MARK_MANY = text(
    "UPDATE run_steps SET dispatched_at = :now, redispatch_count = v.n "
    "FROM unnest(CAST(:run_ids AS uuid[]), CAST(:step_keys AS varchar[]), "
    "CAST(:counts AS integer[])) AS v(run_id, step_key, n) "
    "WHERE run_steps.run_id = v.run_id AND run_steps.step_key = v.step_key"
)


def mark_dispatched(session: Session, steps: Sequence[DispatchMark], now: dt.datetime) -> None:
    """Stamp the steps as sent now, each with its re-send count."""
    if not steps:
        return
    if session.get_bind().dialect.name == "postgresql":
        params = {
            "now": now,
            "run_ids": [step.run_id for step in steps],
            "step_keys": [step.step_key for step in steps],
            "counts": [step.redispatch_count for step in steps],
        }
        session.execute(_MARK_MANY, params)
        return
    keys_by_count: dict[int, list[tuple[uuid.UUID, str]]] = defaultdict(list)
    for step in steps:
        keys_by_count[step.redispatch_count].append((step.run_id, step.step_key))
    for count, keys in keys_by_count.items():
        session.execute(
            update(RunStep)
            .where(tuple_(RunStep.run_id, RunStep.step_key).in_(keys))
            .values(dispatched_at=now, redispatch_count=count)
            .execution_options(synchronize_session=False)
        )


def release_all(session: Session, now: dt.datetime) -> int:
    """Every lease ends `now` and every message sent is forgotten; the number of steps touched.

    For the start of the only process that executes a database's steps: whoever held a lease
    is dead and every message died with it, so the next tick sends each step again.
    """
    # A running step the sweeper sent again after its lease ran out is forgotten too: that
    # message died with the process, and the step would wait out its backoff.
    leased = session.execute(
        update(RunStep)
        .where(
            RunStep.status == StepStatus.RUNNING,
            or_(RunStep.lease_expires_at > now, RunStep.dispatched_at.is_not(None)),
        )
        .values(
            lease_expires_at=case(
                (RunStep.lease_expires_at > now, now), else_=RunStep.lease_expires_at
            ),
            dispatched_at=None,
            redispatch_count=0,
        )
        .execution_options(synchronize_session=False)
    )
    sent = session.execute(
        update(RunStep)
        .where(RunStep.status.in_(STEP_CLAIMABLE), RunStep.dispatched_at.is_not(None))
        .values(dispatched_at=None, redispatch_count=0)
        .execution_options(synchronize_session=False)
    )
    return int(leased.rowcount) + int(sent.rowcount)  # type: ignore[attr-defined]
