"""Retries and replays of runs: the run's retry gate, step resets, replays, bulk operations."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, exists, func, insert, literal, select, update
from sqlalchemy.orm import Session, aliased

from engine.store import rollup
from models.enums import BulkItemStatus, BulkStatus, RunStatus, StepStatus
from models.ids import new_id
from models.tables import BulkItem, BulkOperation, Run, RunStep


@dataclass(frozen=True)
class RunState:
    """What deciding on a retry or replay reads of a run."""

    id: uuid.UUID
    automation_id: uuid.UUID
    version_id: uuid.UUID
    contact_id: uuid.UUID | None
    event_id: uuid.UUID | None
    status: str
    retries: int


_RUN_STATE = select(
    Run.id,
    Run.automation_id,
    Run.version_id,
    Run.contact_id,
    Run.event_id,
    Run.status,
    Run.retries,
)


def run_state(session: Session, run_id: uuid.UUID, *, lock: bool = False) -> RunState | None:
    stmt = _RUN_STATE.where(Run.id == run_id)
    row = session.execute(stmt.with_for_update() if lock else stmt).first()
    return RunState(*row) if row is not None else None


def begin_retry(
    session: Session, run_id: uuid.UUID, *, status: str, retries: int, now: dt.datetime
) -> bool:
    """Compare-and-set the run back to running, if nobody retried or changed it since it was
    read with this status and retry count; False otherwise."""
    same = (Run.id == run_id, Run.status == status, Run.retries == retries)
    # Locked first: the rollup takes the run off the end it is leaving, which it reads here.
    before = session.execute(
        select(Run.automation_id, Run.created_at, Run.started_at, Run.completed_at)
        .where(*same)
        .with_for_update()
    ).first()
    if before is None:
        return False
    result = session.execute(
        update(Run)
        .where(*same)
        .values(
            status=RunStatus.RUNNING,
            completed_at=None,
            retries=Run.retries + 1,
            last_retried_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    automation_id, created_at, started_at, completed_at = before
    rollup.note_run_known(session, run_id, automation_id, created_at)
    rollup.note_run_ended(
        session, run_id, status, started_at=started_at, ended_at=completed_at, undo=True
    )
    rollup.note_retry(session, run_id, first=retries == 0)
    return True


def step_rows(session: Session, run_id: uuid.UUID) -> list[RunStep]:
    """Every step row of the run (locked: the retry rewrites some of them)."""
    return list(session.scalars(select(RunStep).where(RunStep.run_id == run_id).with_for_update()))


def reset_steps(session: Session, run_id: uuid.UUID, keys: Sequence[str], now: dt.datetime) -> None:
    """Make these steps pending and due now, as if reached for the first time."""
    ended = session.execute(
        select(RunStep.step_key, RunStep.step_type, RunStep.status, RunStep.skip_reason)
        .where(RunStep.run_id == run_id, RunStep.step_key.in_(list(keys)))
        .with_for_update()
    )
    for step_key, step_type, status, skip_reason in ended:
        rollup.note_step_ended(session, run_id, step_key, step_type, status, skip_reason, undo=True)
    session.execute(
        update(RunStep)
        .where(RunStep.run_id == run_id, RunStep.step_key.in_(list(keys)))
        .values(
            status=StepStatus.PENDING,
            skip_reason=None,
            branch=None,
            wait_event=None,
            due_at=now,
            dispatched_at=now,
            redispatch_count=0,
            lease_expires_at=None,
            started_at=None,
            completed_at=None,
            output=None,
            error=None,
            failed_attempts=0,
            worker_losses=0,
        )
        .execution_options(synchronize_session=False)
    )


def replays_of(session: Session, run_id: uuid.UUID) -> list[uuid.UUID]:
    """The runs that replay this one, oldest first."""
    stmt = select(Run.id).where(Run.replay_of == run_id).order_by(Run.created_at, Run.id)
    return list(session.scalars(stmt))


# -- bulk operations ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunMatch:
    """Which runs of an automation a bulk operation takes: never one already replayed, which its
    replay carries on (a retry would send its emails again, a replay repeat the first)."""

    automation_id: uuid.UUID
    statuses: Collection[str]
    step_statuses: Collection[str]
    error_code: str | None = None
    step_key: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None


def _matching(match: RunMatch) -> Select[Any]:
    stmt = select(Run.id).where(
        Run.automation_id == match.automation_id, Run.status.in_(sorted(match.statuses))
    )
    if match.created_after is not None:
        stmt = stmt.where(Run.created_at > match.created_after)
    if match.created_before is not None:
        stmt = stmt.where(Run.created_at < match.created_before)
    if match.error_code is not None or match.step_key is not None:
        conditions = [RunStep.run_id == Run.id, RunStep.status.in_(sorted(match.step_statuses))]
        if match.step_key is not None:
            conditions.append(RunStep.step_key == match.step_key)
        if match.error_code is not None:
            conditions.append(RunStep.error["code"].as_string() == match.error_code)
        stmt = stmt.where(exists().where(and_(*conditions)))
    replay = aliased(Run)
    return stmt.where(~exists().where(replay.replay_of == Run.id))


def count_matching(session: Session, match: RunMatch) -> int:
    return int(session.scalar(select(func.count()).select_from(_matching(match).subquery())) or 0)


def sample_matching(session: Session, match: RunMatch, limit: int) -> list[Run]:
    """The newest matching runs."""
    ids = _matching(match).order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)
    stmt = select(Run).where(Run.id.in_(ids.scalar_subquery()))
    return list(session.scalars(stmt.order_by(Run.created_at.desc(), Run.id.desc())))


def error_codes(session: Session, match: RunMatch, limit: int) -> list[tuple[str | None, int]]:
    """The error codes of the matching runs' stopped steps, each with how many runs, most first."""
    runs = _matching(match).subquery()
    code = RunStep.error["code"].as_string()
    count = func.count(func.distinct(RunStep.run_id))
    stmt = (
        select(code, count)
        .select_from(RunStep)
        .join(runs, runs.c.id == RunStep.run_id)
        .where(RunStep.status.in_(sorted(match.step_statuses)))
        .group_by(code)
        .order_by(count.desc(), code)
        .limit(limit)
    )
    return [(row[0], int(row[1])) for row in session.execute(stmt)]


def running_bulk(
    session: Session, automation_id: uuid.UUID, action: str, filter_hash: str
) -> BulkOperation | None:
    """A running operation of the same action and filter on this automation."""
    stmt = select(BulkOperation).where(
        BulkOperation.automation_id == automation_id,
        BulkOperation.action == action,
        BulkOperation.filter_hash == filter_hash,
        BulkOperation.status == BulkStatus.RUNNING,
    )
    return session.scalars(stmt.limit(1)).first()


def create_bulk(
    session: Session,
    *,
    automation_id: uuid.UUID,
    action: str,
    filter_body: dict[str, Any],
    filter_hash: str,
    match: RunMatch,
    now: dt.datetime,
) -> BulkOperation:
    """The operation and one pending item per matching run, set-based."""
    bulk = BulkOperation(
        id=new_id(),
        automation_id=automation_id,
        action=action,
        status=BulkStatus.RUNNING,
        filter=filter_body,
        filter_hash=filter_hash,
        matched=0,
        done=0,
        skipped=0,
        failed=0,
        created_at=now,
        updated_at=now,
    )
    session.add(bulk)
    session.flush()
    runs = _matching(match).add_columns(Run.retries).subquery()
    session.execute(
        insert(BulkItem).from_select(
            ["bulk_id", "run_id", "retries", "status"],
            select(
                literal(bulk.id), runs.c.id, runs.c.retries, literal(BulkItemStatus.PENDING.value)
            ),
        )
    )
    bulk.matched = int(session.scalar(select(func.count()).where(BulkItem.bulk_id == bulk.id)) or 0)
    if bulk.matched == 0:
        bulk.status, bulk.completed_at = BulkStatus.COMPLETED, now
    session.flush()
    return bulk


def bulk_owner(session: Session, bulk_id: uuid.UUID) -> uuid.UUID | None:
    """The automation of an operation, read without a lock (to lock it first)."""
    return session.scalar(select(BulkOperation.automation_id).where(BulkOperation.id == bulk_id))


def end_running_bulks(
    session: Session, automation_id: uuid.UUID, *, error: str, now: dt.datetime
) -> int:
    """End the automation's running operations (the caller holds its lock, which a chunk takes
    before its operation's): their runs not done yet are skipped with this reason. How many."""
    running = session.scalars(
        select(BulkOperation.id)
        .where(
            BulkOperation.automation_id == automation_id,
            BulkOperation.status == BulkStatus.RUNNING,
        )
        .order_by(BulkOperation.id)
        .with_for_update()
    ).all()
    for bulk_id in running:
        skipped = skip_pending_items(session, bulk_id, error=error, now=now)
        session.execute(
            update(BulkOperation)
            .where(BulkOperation.id == bulk_id)
            .values(
                status=BulkStatus.COMPLETED,
                completed_at=now,
                updated_at=now,
                skipped=BulkOperation.skipped + skipped,
            )
            .execution_options(synchronize_session=False)
        )
    return len(running)


def get_bulk(session: Session, bulk_id: uuid.UUID, *, lock: bool = False) -> BulkOperation | None:
    stmt = select(BulkOperation).where(BulkOperation.id == bulk_id)
    return session.scalars(stmt.with_for_update() if lock else stmt).first()


def pending_items(
    session: Session, bulk_id: uuid.UUID, limit: int
) -> list[tuple[uuid.UUID, int | None]]:
    """The next runs to do, each with its retry count when it was matched."""
    stmt = (
        select(BulkItem.run_id, BulkItem.retries)
        .where(BulkItem.bulk_id == bulk_id, BulkItem.status == BulkItemStatus.PENDING)
        .order_by(BulkItem.run_id)
        .limit(limit)
    )
    return [(run_id, retries) for run_id, retries in session.execute(stmt)]


def finish_item(
    session: Session,
    bulk_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    status: BulkItemStatus,
    now: dt.datetime,
    error: str | None = None,
    new_run_id: uuid.UUID | None = None,
) -> None:
    session.execute(
        update(BulkItem)
        .where(BulkItem.bulk_id == bulk_id, BulkItem.run_id == run_id)
        .values(status=status, error=error, new_run_id=new_run_id, completed_at=now)
        .execution_options(synchronize_session=False)
    )


def skip_pending_items(
    session: Session, bulk_id: uuid.UUID, *, error: str, now: dt.datetime
) -> int:
    """Mark every item not done yet skipped, with this reason; how many there were."""
    result = session.execute(
        update(BulkItem)
        .where(BulkItem.bulk_id == bulk_id, BulkItem.status == BulkItemStatus.PENDING)
        .values(status=BulkItemStatus.SKIPPED, error=error, completed_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


def stale_bulks(session: Session, *, idle_before: dt.datetime, now: dt.datetime) -> list[uuid.UUID]:
    """Running operations without progress since `idle_before` (their message was lost),
    touched so that the next tick does not send them again at once."""
    stmt = (
        select(BulkOperation.id)
        .where(BulkOperation.status == BulkStatus.RUNNING, BulkOperation.updated_at < idle_before)
        .order_by(BulkOperation.updated_at)
        .limit(100)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(stmt))
    if ids:
        session.execute(
            update(BulkOperation)
            .where(BulkOperation.id.in_(ids))
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


def bulk_items(session: Session, bulk_id: uuid.UUID, *, limit: int) -> list[BulkItem]:
    """Items that ended other than done (skipped or failed) first, then the rest."""
    unusual = BulkItem.status.in_([BulkItemStatus.SKIPPED, BulkItemStatus.FAILED])
    stmt = (
        select(BulkItem)
        .where(BulkItem.bulk_id == bulk_id)
        .order_by(unusual.desc(), BulkItem.run_id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def recent_bulks(session: Session, automation_id: uuid.UUID, limit: int) -> list[BulkOperation]:
    """The automation's bulk operations, newest first."""
    stmt = (
        select(BulkOperation)
        .where(BulkOperation.automation_id == automation_id)
        .order_by(BulkOperation.created_at.desc(), BulkOperation.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))
