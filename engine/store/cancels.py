"""Cancelling runs: a stopped or deleted automation's runs in flight, one run, a claimed step.

Cancels lock in the order every writer of runs takes (docs/durability.md): the automation (for
a stop's or a deletion's), the runs' contacts, then their steps, then the runs in id order.

A stop with `cancel_runs` (or a deletion) marks its automation in its own transaction; its runs
are then cancelled a slice per transaction (`cancel_slice`), and the last clears the mark. A
step of a marked automation's running run sees the run cancelled (engine/store/claims.py), so
none starts once the mark is committed, and no transaction holds more than a slice's locks.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, select, tuple_, update
from sqlalchemy.orm import Session

from engine.store import rollup
from engine.store.core import (
    AUTOMATIONS,
    CONTACTS,
    RUNS,
    STEPS,
    after_locking,
    execute,
    locked_first,
    one_of,
)
from engine.store.runs import update_step
from models.enums import STEP_CLAIMABLE, RunStatus, StepStatus
from models.types import UTCDateTime

_NOW = bindparam("now", type_=UTCDateTime())


def cancel_step(
    session: Session, run_id: uuid.UUID, step_key: str, step_type: str, now: dt.datetime
) -> None:
    """End a claimed step of a cancelled run: it takes no further part."""
    update_step(
        session,
        run_id,
        step_key,
        status=StepStatus.CANCELLED,
        completed_at=now,
        lease_expires_at=None,
    )
    rollup.note_step_ended(session, run_id, step_key, step_type, StepStatus.CANCELLED)


# Steps not in a worker's hands: a running step finishes and sees its run cancelled.
_CANCEL_IDLE_STEPS = (
    update(STEPS)
    .where(
        STEPS.c.run_id.in_(bindparam("ids", expanding=True)),
        one_of(STEPS.c.status, STEP_CLAIMABLE),
    )
    .values(status=StepStatus.CANCELLED, completed_at=_NOW, lease_expires_at=None)
    .returning(STEPS.c.run_id, STEPS.c.step_key, STEPS.c.step_type)
)


# The runs of a slice: a transaction holds their contacts' locks until it commits (about 50 µs
# a run), and an automation can have a million in flight.
SLICE = 5_000

_UNFINISHED = and_(RUNS.c.automation_id == bindparam("aid"), RUNS.c.status == RunStatus.RUNNING)
# After the previous slice, in the order of ix_runs_automation_status_recent: a slice starts
# where the last ended, not behind the index entries of the runs cancelled before it.
_AFTER = tuple_(RUNS.c.created_at, RUNS.c.id) > tuple_(
    bindparam("after_at", type_=UTCDateTime()), bindparam("after_id", type_=RUNS.c.id.type)
)


def _next_slice(*after: ColumnElement[bool]) -> Select[Any]:
    """The automation's next `slice` unfinished runs, oldest first, their contacts locked in id
    order for the one-time filter of the statement that lists them: cancelling them then takes
    their steps and runs after their contacts, as ingestion and a contact's deletion do. Taken
    step first, two waits of one contact could be locked in one order by an event resuming them
    and in another by the cancel.

    The runs are read from the statement's snapshot, taken before it waited for a contact: a
    run whose contact was deleted meanwhile is still listed (its run is still running)."""
    listed = (
        select(RUNS.c.id, RUNS.c.created_at, RUNS.c.contact_id)
        .where(_UNFINISHED, *after)
        .order_by(RUNS.c.created_at, RUNS.c.id)
        .limit(bindparam("slice"))
        .cte("listed")
    )
    contacts = locked_first(
        select(CONTACTS.c.id)
        .where(CONTACTS.c.id.in_(select(listed.c.contact_id)))
        .order_by(CONTACTS.c.id)
        .with_for_update(),
        "contacts_locked",
    )
    return (
        select(listed.c.id, listed.c.created_at)
        .where(after_locking(contacts))
        .order_by(listed.c.created_at, listed.c.id)
    )


_FIRST_SLICE, _SLICE_AFTER = _next_slice(), _next_slice(_AFTER)

_THIS_AUTOMATION = AUTOMATIONS.c.id == bindparam("aid")
_MARKED = and_(_THIS_AUTOMATION, AUTOMATIONS.c.runs_cancelling_at.is_not(None))
# The automation's mark, locked (the first lock of a slice's transaction, as of a stop's):
# still set, or another transaction finished the cancel; and where the last slice ended.
# Stamped `now`: a cancel under way, which the sweeper leaves alone.
_HOLD_MARK = (
    update(AUTOMATIONS)
    .where(_MARKED)
    .values(runs_cancelling_at=_NOW)
    .returning(AUTOMATIONS.c.cancelled_through_at, AUTOMATIONS.c.cancelled_through_id)
)
_MARK = (
    update(AUTOMATIONS)
    .where(_THIS_AUTOMATION)
    .values(runs_cancelling_at=_NOW, cancelled_through_at=None, cancelled_through_id=None)
)
_CLEAR_MARK = (
    update(AUTOMATIONS)
    .where(_THIS_AUTOMATION)
    .values(runs_cancelling_at=None, cancelled_through_at=None, cancelled_through_id=None)
)
_CANCELLED_THROUGH = (
    update(AUTOMATIONS)
    .where(_THIS_AUTOMATION)
    .values(
        cancelled_through_at=bindparam("last_at", type_=UTCDateTime()),
        cancelled_through_id=bindparam("last_id", type_=AUTOMATIONS.c.cancelled_through_id.type),
    )
)


def mark_cancelling(session: Session, automation_id: uuid.UUID, now: dt.datetime) -> None:
    """Mark the automation's runs as being cancelled (it is locked): its steps see its running
    runs as cancelled from this transaction's commit on, and `cancel_slice` cancels them, from
    the oldest."""
    execute(session, _MARK, {"aid": automation_id, "now": now})


@dataclass(frozen=True)
class Slice:
    """What one slice cancelled; whether it was the last (the mark is cleared)."""

    cancelled: int
    finished: bool


def cancel_slice(
    session: Session,
    automation_id: uuid.UUID,
    now: dt.datetime,
    *,
    size: int | None = None,
) -> Slice:
    """Cancel the next slice of a marked automation's unfinished runs in this transaction,
    oldest first, from where the slice before ended (kept on the automation's row, whichever
    process cancelled it): the mark is stamped `now`, and cleared with the last.

    Every run older than that place was cancelled by an earlier slice, or had ended: none can
    run again while the mark stands (a retry is refused). Lock order: the automation, then the
    slice's contacts, steps, and runs in id order."""
    held = execute(session, _HOLD_MARK, {"aid": automation_id, "now": now})
    mark = held.first()
    if mark is None:
        return Slice(0, finished=True)
    params: dict[str, Any] = {"aid": automation_id, "slice": size or SLICE}
    statement = _FIRST_SLICE
    after_at, after_id = tuple(mark)
    if after_at is not None:
        statement = _SLICE_AFTER
        params.update(after_at=after_at, after_id=after_id)
    listed = [tuple(row) for row in execute(session, statement, params)]
    cancelled = _cancel_slice(session, [run_id for run_id, _ in listed], now) if listed else 0
    if len(listed) < params["slice"]:
        execute(session, _CLEAR_MARK, {"aid": automation_id})
        return Slice(cancelled, finished=True)
    last_id, last_at = listed[-1]
    execute(
        session, _CANCELLED_THROUGH, {"aid": automation_id, "last_at": last_at, "last_id": last_id}
    )
    return Slice(cancelled, finished=False)


# Marks stamped before `before` (no slice since: the process or message carrying the cancel
# was lost), oldest first, stamped `now` as they are taken: the next tick leaves them alone.
# SKIP LOCKED: a mark locked is a slice under way, and the sweeper waits for no one.
_STALLED = (
    update(AUTOMATIONS)
    .where(
        AUTOMATIONS.c.id.in_(
            select(AUTOMATIONS.c.id)
            .where(AUTOMATIONS.c.runs_cancelling_at < bindparam("before", type_=UTCDateTime()))
            .order_by(AUTOMATIONS.c.runs_cancelling_at)
            .limit(100)
            .with_for_update(skip_locked=True)
        )
    )
    .values(runs_cancelling_at=_NOW)
    .returning(AUTOMATIONS.c.id)
)


def stalled_cancels(session: Session, *, before: dt.datetime, now: dt.datetime) -> list[uuid.UUID]:
    """Automations whose runs' cancel made no progress since `before`, taken over `now`."""
    return list(execute(session, _STALLED, {"before": before, "now": now}).scalars())


# The runs to cancel, locked in id order as the sweeper locks those it fails and a contact's
# deletion its own: in the order of the UPDATE's plan (the table's, for a bitmap scan), the
# cancel could hold one run the sweeper waits for while it waits for another the sweeper holds.
_RUNS_LOCKED = locked_first(
    select(RUNS.c.id)
    .where(RUNS.c.id.in_(bindparam("ids", expanding=True)), RUNS.c.status == RunStatus.RUNNING)
    .order_by(RUNS.c.id)
    .with_for_update(),
    "runs_locked",
)
_CANCEL_RUNS = (
    update(RUNS)
    .where(RUNS.c.id.in_(select(_RUNS_LOCKED.c.id)), RUNS.c.status == RunStatus.RUNNING)
    .values(status=RunStatus.CANCELLED, completed_at=_NOW)
    .returning(RUNS.c.id, RUNS.c.automation_id, RUNS.c.created_at)
)


def cancel_run(session: Session, run_id: uuid.UUID, now: dt.datetime) -> None:
    """Cancel a run and its unfinished steps (step rows first: the executor's lock order)."""
    _cancel_slice(session, [run_id], now)


def _cancel_slice(session: Session, run_ids: list[uuid.UUID], now: dt.datetime) -> int:
    params = {"ids": run_ids, "now": now}
    steps = [tuple(row) for row in execute(session, _CANCEL_IDLE_STEPS, params)]
    runs = {
        run_id: rollup.EndedRun(owner, created)
        for run_id, owner, created in map(tuple, execute(session, _CANCEL_RUNS, params))
    }
    # Noted by rollup key: a handful of counters, however many runs end.
    rollup.note_runs_cancelled(
        session,
        now,
        runs.values(),
        (
            rollup.EndedStep(run.automation_id, run.created_at, step_key, step_type)
            for run_id, step_key, step_type in steps
            if (run := runs.get(run_id)) is not None
        ),
    )
    for run_id, step_key, step_type in steps:  # its run ended meanwhile, by another transaction
        if run_id not in runs:
            rollup.note_step_ended(session, run_id, step_key, step_type, StepStatus.CANCELLED)
    return len(runs)
