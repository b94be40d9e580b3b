"""Runs and their steps: claims, transitions and the reads the executor needs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Executable,
    Insert,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from engine.store import rollup, rollup_upserts
from engine.store.core import RUNS, STEPS, THIS_STEP, Carried, after_locking, execute
from models.enums import ConnectionType, RunStatus, SkipReason, StepStatus
from models.tables import Run, RunStep
from models.types import JSONType, UTCDateTime


@dataclass(frozen=True)
class StepState:
    step_key: str
    step_type: str
    status: str
    skip_reason: str | None
    branch: str | None


_NOW = bindparam("now", type_=UTCDateTime())


def lock_run(session: Session, run_id: uuid.UUID) -> Run | None:
    return session.scalars(select(Run).where(Run.id == run_id).with_for_update()).first()


_INSERT_RUN = insert(RUNS)


def new_run_row(
    run_id: uuid.UUID,
    automation_id: uuid.UUID,
    version_id: uuid.UUID,
    contact_id: uuid.UUID,
    event_id: uuid.UUID,
    now: dt.datetime,
    *,
    replay_of: uuid.UUID | None = None,
) -> dict[str, Any]:
    """A run as created; every row has the same keys so that runs insert in one batch."""
    return {
        "id": run_id,
        "automation_id": automation_id,
        "version_id": version_id,
        "contact_id": contact_id,
        "event_id": event_id,
        "status": RunStatus.RUNNING,
        "started_at": now,
        "completed_at": None,
        "created_at": now,
        "replay_of": replay_of,
    }


def insert_runs(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        execute(session, _INSERT_RUN, list(rows))
        rollup.note_runs_created(session, rows)


# The attempt of a step's first claim (a claim counts up from 0).
FIRST_CLAIM = 1


def new_step_row(
    run_id: uuid.UUID,
    key: str,
    step_type: str,
    now: dt.datetime,
    *,
    status: StepStatus = StepStatus.PENDING,
    skip_reason: SkipReason | None = None,
    output: dict[str, Any] | None = None,
    branch: ConnectionType | None = None,
    claimed_until: dt.datetime | None = None,
) -> dict[str, Any]:
    """A step row as created; every row has the same keys so that rows insert in one batch.

    `claimed_until`: a pending step created already claimed (attempt `FIRST_CLAIM`, its lease
    until then), by a transaction whose process executes it next, inline: it holds its claim
    from that commit on, and no message is sent for it.
    """
    pending = status == StepStatus.PENDING
    claimed = pending and claimed_until is not None
    return {
        "run_id": run_id,
        "step_key": key,
        "step_type": step_type,
        "status": StepStatus.RUNNING if claimed else status,
        "skip_reason": skip_reason,
        "attempt": FIRST_CLAIM if claimed else 0,
        "failed_attempts": 0,
        "claimed_at": now if claimed else None,
        "lease_expires_at": claimed_until if claimed else None,
        "due_at": now if pending else None,
        "dispatched_at": now if pending and not claimed else None,
        "redispatch_count": 0,
        "started_at": now if status == StepStatus.COMPLETED else None,
        "completed_at": None if pending else now,
        "created_at": now,
        "output": output,
        "branch": branch,
    }


# The columns a new step row sets (the rest take their defaults).
NEW_STEP_COLUMNS = frozenset(new_step_row(uuid.UUID(int=0), "", "", dt.datetime.min))


_INSERT_STEPS = insert(STEPS)


def insert_steps(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Create step rows; every row must carry the same keys."""
    if rows:
        execute(session, _INSERT_STEPS, list(rows))
        rollup.note_steps_created(session, rows)


def update_step(
    session: Session,
    run_id: uuid.UUID,
    step_key: str,
    **values: Any,
) -> None:
    execute(
        session,
        update(STEPS)
        .where(STEPS.c.run_id == run_id, STEPS.c.step_key == step_key)
        .values(**values),
    )


# A step's start, unless it started before (an earlier attempt): the first time it began.
MARK_STARTED = (
    update(STEPS).where(THIS_STEP).values(started_at=func.coalesce(STEPS.c.started_at, _NOW))
)


def mark_started(session: Session, run_id: uuid.UUID, step_key: str, now: dt.datetime) -> None:
    """The step's start, unless it started before (an earlier attempt)."""
    execute(session, MARK_STARTED, {"rid": run_id, "key": step_key, "now": now})


_FINISH_STEP = (
    update(STEPS)
    .where(THIS_STEP)
    .values(
        status=bindparam("new_status"),
        skip_reason=bindparam("new_skip_reason"),
        branch=bindparam("new_branch"),
        output=bindparam("new_output", type_=JSONType),
        error=bindparam("new_error", type_=JSONType),
        lease_expires_at=None,
        wait_event=None,
        started_at=func.coalesce(STEPS.c.started_at, _NOW),
        # Never before the start another process stamped: clocks of two processes differ a
        # little, and an event can be stamped just before the wait it resumes registered.
        completed_at=case((STEPS.c.started_at > _NOW, STEPS.c.started_at), else_=_NOW),
    )
)


def finish_step(
    session: Session,
    run_id: uuid.UUID,
    step_key: str,
    *,
    step_type: str,
    status: StepStatus,
    now: dt.datetime,
    output: dict[str, Any] | None,
    error: dict[str, Any] | None = None,
    skip_reason: str | None = None,
    branch: str | None = None,
    then_insert: Sequence[dict[str, Any]] = (),
    read_states: bool = False,
    last_write: bool = False,
    carried: Carried | None = None,
) -> list[StepState]:
    """Write a step's end: its status, output or error, the branch taken and its timing; then
    create the steps in `then_insert` (rows as `insert_steps` takes them). With `read_states`,
    the states of the run's steps once this one ended (as `step_states`), else [].

    On PostgreSQL, a step followed by one step (the usual case) is one statement, and so is
    the last step of a run with its run's states. The step was in flight (its worker holds
    it): the rollup counts it as ended now. With `last_write` (the caller writes nothing more
    in this transaction), the step followed by one step also carries the transaction's
    rollup upsert (rollup.take_for_statement): one round trip fewer before the commit.
    `carried`, a write of this transaction not yet made, is made by that statement when it is
    one (`_finish_start_carried`, before the rollup upsert; `_finish_carried_and_read_states`),
    else alone before the step's end.
    """
    rollup.note_step_ended(session, run_id, step_key, step_type, status, skip_reason)
    postgresql = session.get_bind().dialect.name == "postgresql"
    reads_states = read_states and not then_insert and postgresql
    starts_one = len(then_insert) == 1 and postgresql
    if carried is not None and not (reads_states or starts_one):
        carried.run(session)
        carried = None
    params = {
        "rid": run_id,
        "key": step_key,
        "new_status": status,
        "new_skip_reason": skip_reason,
        "new_branch": branch,
        "new_output": output,
        "new_error": error,
        "now": now,
    }
    if reads_states:
        if carried is None:
            rows = execute(session, _FINISH_AND_READ_STATES, params).all()
        else:
            statement = _finish_carried_and_read_states(carried.cte)
            rows = execute(session, statement, {**params, **carried.params}).all()
        return [StepState(*tuple(row)) for row in rows]
    if starts_one:
        (row,) = then_insert
        params.update({_NEXT + k: v for k, v in row.items()})
        rollup.note_steps_created(session, then_insert)
        counted = rollup.take_for_statement(session) if last_write else None
        if carried is not None:
            table, counts = counted if counted is not None else (None, {})
            statement = _finish_start_carried(carried.cte, table)
            execute(session, statement, {**params, **carried.params, **counts})
        elif counted is None:
            execute(session, _FINISH_AND_START, params)
        else:
            table, counts = counted
            execute(session, _finish_start_and_count(table), {**params, **counts})
        return []
    execute(session, _FINISH_STEP, params)
    insert_steps(session, then_insert)
    return step_states(session, run_id) if read_states else []


# The next step's columns as parameters of their own: named after the columns, they would
# also be taken as SET values of the UPDATE in the CTE.
_NEXT = "next_"
_START_NEXT = insert(STEPS).values(
    {
        column.name: bindparam(_NEXT + column.name, type_=column.type)
        for column in STEPS.c
        if column.name in NEW_STEP_COLUMNS
    }
)
_FINISH_AND_START = _START_NEXT.add_cte(_FINISH_STEP.cte("finished"))


@cache
def _finish_start_carried(carried: CTE, table: Table | None) -> Executable:
    """PostgreSQL: `_FINISH_AND_START`, then the carried write, then the upsert of the
    transaction's rollup rows in `table` (if any), each a CTE run in that order (see
    rollup_upserts.upsert_all_after: UNION ALL reads its branches in order, and a data-modifying CTE
    runs to completion when first read). The step row is locked already (claimed, then
    owned) and the next step's row is new: the carried write's rows (an outbox row) are
    locked next, after the step and run rows as when it ran alone, and the rollup rows last."""
    finished = _FINISH_STEP.returning(literal_column("1")).cte("finished")
    started = _START_NEXT.returning(literal_column("1")).cte("started")
    tables = (table,) if table is not None else ()
    return rollup_upserts.upsert_all_after((finished, started, carried), tables)


@cache
def _finish_start_and_count(table: Table) -> Insert:
    """`_FINISH_AND_START` with the upsert of the transaction's rollup rows in `table`. The
    step and run rows are locked already (claimed, and locked with the run's context): the
    rollup rows, upserted in key order, are the only rows this statement locks anew."""
    return _FINISH_AND_START.add_cte(rollup_upserts.upsert_cte(table))


_STATE_COLUMNS = (
    STEPS.c.step_key,
    STEPS.c.step_type,
    STEPS.c.status,
    STEPS.c.skip_reason,
    STEPS.c.branch,
)
_STEP_STATES = select(*_STATE_COLUMNS).where(STEPS.c.run_id == bindparam("rid"))

_FINISHED = _FINISH_STEP.returning(*_STATE_COLUMNS).cte("finished")


def _finish_and_read_states(*first: ColumnElement[bool]) -> Executable:
    """PostgreSQL: the step's end and the states of its run's steps in one round trip. The
    SELECT sees the rows as they were when the statement began: this step's state comes from
    the UPDATE's RETURNING, the others' from the table. `first`: one-time filters evaluated
    before the other steps are read."""
    return union_all(
        select(*_FINISHED.c),
        select(*_STATE_COLUMNS).where(
            *first, STEPS.c.run_id == bindparam("rid"), STEPS.c.step_key != bindparam("key")
        ),
    )


_FINISH_AND_READ_STATES = _finish_and_read_states()


@cache
def _finish_carried_and_read_states(carried: CTE) -> Executable:
    """`_FINISH_AND_READ_STATES` with the carried write made after the step's end and before
    the other steps are read. As in `_finish_start_carried`, the write's rows are locked after
    the step's, which the step's worker holds already. The write changes no step row: the
    states read are the same."""
    return _finish_and_read_states(after_locking(carried))


def step_states(session: Session, run_id: uuid.UUID) -> list[StepState]:
    rows = execute(session, _STEP_STATES, {"rid": run_id}).all()
    return [StepState(*tuple(row)) for row in rows]


def wait_outputs(session: Session, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """Outputs of the run's wait_for_event steps that received their event."""
    return [
        output
        for output in session.scalars(
            select(RunStep.output).where(
                RunStep.run_id == run_id,
                RunStep.step_type == "wait_for_event",
                RunStep.branch == "event_received",
            )
        )
        if output
    ]


_END_RUN = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("rid"), RUNS.c.status == RunStatus.RUNNING)
    .values(status=bindparam("new_status"), completed_at=_NOW)
)
_FINISH_RUN = _END_RUN.returning(RUNS.c.automation_id, RUNS.c.created_at, RUNS.c.started_at)
_RUN_ENDED = _END_RUN.returning(literal_column("1")).cte("run_ended")


def finish_run(
    session: Session,
    run_id: uuid.UUID,
    status: RunStatus,
    now: dt.datetime,
    *,
    last_write: bool = False,
) -> None:
    """End a running run (its caller holds it locked and saw it running).

    With `last_write` (the caller writes nothing more in this transaction), on PostgreSQL, the
    run's end carries the transaction's rollup upsert (rollup.take_with_run_end): one round
    trip fewer before the commit. The run row, locked when the caller read it, takes no new
    lock: the rollup rows, in their order, are the only rows this statement locks anew.
    """
    params = {"rid": run_id, "new_status": status, "now": now}
    postgresql = session.get_bind().dialect.name == "postgresql"
    counted = (
        rollup.take_with_run_end(session, run_id, status, now)
        if last_write and postgresql
        else None
    )
    if counted is not None:
        tables, counts = counted
        statement = rollup_upserts.upsert_all_after((_RUN_ENDED,), tables)
        ended = execute(session, statement, {**params, **counts}).scalars().first()
        if ended != 1:  # counted as ended: it must have been running, as the caller saw it
            raise RuntimeError(f"run {run_id} was not running when it was ended")
        return
    for row in execute(session, _FINISH_RUN, params).all():
        automation_id, created_at, started_at = tuple(row)
        rollup.note_run_known(session, run_id, automation_id, created_at)
        rollup.note_run_ended(session, run_id, status, started_at=started_at, ended_at=now)


def wake_waits_of_contact(session: Session, contact_id: uuid.UUID, now: dt.datetime) -> None:
    """The waiting steps (delays, waits for an event) of the contact's running runs, due now
    and not yet sent: the sweeper sends them at its next tick. A message already sent for one
    (a short delay's countdown) finds it claimed and does nothing."""
    runs = select(Run.id).where(Run.contact_id == contact_id, Run.status == RunStatus.RUNNING)
    session.execute(
        update(RunStep)
        .where(RunStep.run_id.in_(runs), RunStep.status == StepStatus.WAITING)
        .values(due_at=now, dispatched_at=None, redispatch_count=0)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class WaitingStep:
    run_id: uuid.UUID
    step_key: str
    version_id: uuid.UUID
    created_at: dt.datetime
    contact_id: uuid.UUID
    wait_event: str


_WAITS_FOR = (
    select(
        STEPS.c.run_id,
        STEPS.c.step_key,
        RUNS.c.version_id,
        STEPS.c.created_at,
        RUNS.c.contact_id,
        STEPS.c.wait_event,
    )
    .join(RUNS, RUNS.c.id == STEPS.c.run_id)
    .where(
        RUNS.c.contact_id.in_(bindparam("contact_ids", expanding=True)),
        RUNS.c.status == RunStatus.RUNNING,
        STEPS.c.status == StepStatus.WAITING,
        STEPS.c.wait_event.in_(bindparam("event_names", expanding=True)),
        or_(STEPS.c.due_at.is_(None), STEPS.c.due_at > _NOW),
    )
    .order_by(STEPS.c.created_at, STEPS.c.run_id, STEPS.c.step_key)
)


def waits_for(
    session: Session,
    *,
    contact_ids: Iterable[uuid.UUID],
    event_names: Iterable[str],
    now: dt.datetime,
) -> list[WaitingStep]:
    """These contacts' wait_for_event steps waiting for one of these events, oldest first."""
    params = {"contact_ids": sorted(set(contact_ids)), "event_names": sorted(set(event_names))}
    rows = execute(session, _WAITS_FOR, {**params, "now": now}).all()
    return [WaitingStep(*tuple(row)) for row in rows]


def resume_wait(session: Session, run_id: uuid.UUID, step_key: str, *, now: dt.datetime) -> bool:
    """Compare-and-set a waiting step to running for its event; False if a timeout won."""
    result = session.execute(
        update(RunStep)
        .where(
            RunStep.run_id == run_id,
            RunStep.step_key == step_key,
            RunStep.status == StepStatus.WAITING,
            or_(RunStep.due_at.is_(None), RunStep.due_at > now),
        )
        .values(status=StepStatus.RUNNING, attempt=RunStep.attempt + 1, claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def get_run(session: Session, run_id: uuid.UUID) -> Run | None:
    return session.get(Run, run_id)
