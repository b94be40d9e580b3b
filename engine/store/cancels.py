"""Cancelling runs: a stopped or deleted automation's runs in flight, one run, a claimed step.

Cancels lock in the order every writer of runs takes (docs/durability.md): the runs' contacts
first, then their steps, then the runs in id order.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.orm import Session

from engine.store import rollup
from engine.store.core import CONTACTS, RUNS, STEPS, after_locking, execute, locked_first, one_of
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


_UNFINISHED = and_(RUNS.c.automation_id == bindparam("aid"), RUNS.c.status == RunStatus.RUNNING)
# The contacts of the automation's unfinished runs, locked in id order for the one-time filter
# of the statement that lists the runs: cancelling them then takes their steps and runs after
# their contacts, as ingestion and a contact's deletion do. Taken step first, two waits of one
# contact could be locked in one order by an event resuming them and in another by the cancel.
_CONTACTS_OF_UNFINISHED = locked_first(
    select(CONTACTS.c.id)
    .where(CONTACTS.c.id.in_(select(RUNS.c.contact_id).where(_UNFINISHED)))
    .order_by(CONTACTS.c.id)
    .with_for_update(),
    "contacts_locked",
)
_UNFINISHED_RUN_IDS = (
    select(RUNS.c.id)
    .where(
        _UNFINISHED,
        after_locking(_CONTACTS_OF_UNFINISHED),
    )
    .order_by(RUNS.c.id)
)


def unfinished_run_ids(session: Session, automation_id: uuid.UUID) -> list[uuid.UUID]:
    """The automation's running runs, their contacts locked first: to cancel them (`cancel_runs`).

    The runs are read from the statement's snapshot, taken before it waited for a contact: a
    run whose contact was deleted meanwhile is still listed (its run is still running)."""
    return list(execute(session, _UNFINISHED_RUN_IDS, {"aid": automation_id}).scalars())


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


# Runs listed in one statement: one parameter each, and a statement takes at most 65,535 on
# PostgreSQL (32,766 on SQLite), while an automation can have hundreds of thousands in flight.
SLICE = 5_000


def cancel_runs(session: Session, run_ids: Sequence[uuid.UUID], now: dt.datetime) -> None:
    """Cancel runs and their unfinished steps (step rows first: the executor's lock order, then
    the runs in id order), the runs' contacts locked before when there are several
    (`unfinished_run_ids`). Many runs go a slice at a time, slices in id order, each its steps
    then its runs: a run is still locked after its step, and runs in id order."""
    ordered = sorted(run_ids)
    for first in range(0, len(ordered), SLICE):
        _cancel_slice(session, ordered[first : first + SLICE], now)


def _cancel_slice(session: Session, run_ids: list[uuid.UUID], now: dt.datetime) -> None:
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
