"""A worker's hold on a step: the compare-and-set claim, its ownership, the run's context.

The executor's lock order is the run's contact (for a step that locks it), then the step row,
then the run row: every statement here keeps it.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    CTE,
    FromClause,
    Select,
    and_,
    bindparam,
    case,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from engine.store import rollup
from engine.store.contacts import ContactRow
from engine.store.core import (
    AUTOMATIONS,
    CONTACTS,
    EVENTS,
    RUNS,
    STEPS,
    THIS_STEP,
    after_locking,
    execute,
    locked_first,
    one_of,
)
from models.enums import STEP_CLAIMABLE, RunStatus, StepStatus
from models.types import UTCDateTime

T = TypeVar("T")

_NOW = bindparam("now", type_=UTCDateTime())


@dataclass(frozen=True)
class ClaimedStep:
    run_id: uuid.UUID
    step_key: str
    step_type: str
    attempt: int
    started_at: dt.datetime | None
    created_at: dt.datetime
    due_at: dt.datetime | None
    output: dict[str, Any] | None


@dataclass(frozen=True)
class RunRow:
    """The run as its steps see it."""

    id: uuid.UUID
    automation_id: uuid.UUID
    version_id: uuid.UUID
    event_id: uuid.UUID | None
    status: str
    created_at: dt.datetime
    started_at: dt.datetime


@dataclass(frozen=True)
class RunContext:
    run: RunRow
    event_payload: dict[str, Any]
    contact: ContactRow | None


_STEP_RUN_CONTACT = STEPS.join(RUNS, RUNS.c.id == STEPS.c.run_id).join(
    CONTACTS, CONTACTS.c.id == RUNS.c.contact_id
)
# A ContactRow's columns, in order.
_CONTACT_COLUMNS = (
    CONTACTS.c.id.label("contact_id"),
    CONTACTS.c.email,
    CONTACTS.c.first_name,
    CONTACTS.c.last_name,
    CONTACTS.c.unsubscribed,
    CONTACTS.c.properties,
)


@functools.cache
def _contact_of_step(step_types: frozenset[str]) -> Select[Any]:
    """The step's contact, locked, if the step is of one of these types (the contact's
    columns: the claim's statement reads the contact from its locked row). The types are
    written into the statement (`one_of`), one statement per set: the executor's is always
    `contact_lockers()`."""
    return (
        select(*_CONTACT_COLUMNS)
        .select_from(_STEP_RUN_CONTACT)
        .where(THIS_STEP, one_of(STEPS.c.step_type, step_types))
        .with_for_update(of=CONTACTS)
    )


def lock_contact_first(
    session: Session, run_id: uuid.UUID, step_key: str, step_types: frozenset[str]
) -> None:
    """Lock the run's contact if the step is of one of these types, before the step and run.

    Ingestion and a contact's deletion lock the contact, then steps and runs; a step that
    locked its step and run first, then the contact, could wait for one of them while it
    holds what it waits for. Nothing is locked if the contact is gone (the step sees that).
    """
    execute(session, _contact_of_step(step_types), {"rid": run_id, "key": step_key}).first()


_CLAIM = (
    update(STEPS)
    .where(
        THIS_STEP,
        or_(
            and_(
                one_of(STEPS.c.status, STEP_CLAIMABLE),
                or_(STEPS.c.due_at.is_(None), STEPS.c.due_at <= _NOW),
            ),
            # Abandoned: a worker claimed it and its lease ran out, and its death is counted
            # (engine/worker_loss.py): the sweeper's takeover counts it, or the worker's parent.
            # A message (one the broker delivered again) never takes over an uncounted claim:
            # a step that kills its worker would run again forever, uncounted.
            and_(
                STEPS.c.status == StepStatus.RUNNING,
                STEPS.c.lease_expires_at < _NOW,
                STEPS.c.lost_attempt == STEPS.c.attempt,
            ),
        ),
    )
    .values(
        status=StepStatus.RUNNING,
        attempt=STEPS.c.attempt + 1,
        claimed_at=_NOW,
        lease_expires_at=bindparam("lease_until", type_=UTCDateTime()),
    )
    .returning(
        STEPS.c.step_type,
        STEPS.c.attempt,
        STEPS.c.started_at,
        STEPS.c.created_at,
        STEPS.c.due_at,
        STEPS.c.output,
    )
)


def claim_step(
    session: Session,
    run_id: uuid.UUID,
    step_key: str,
    *,
    now: dt.datetime,
    lease_until: dt.datetime,
) -> ClaimedStep | None:
    """Compare-and-set a due step to running; None means a duplicate or stale message."""
    params = {"rid": run_id, "key": step_key, "now": now, "lease_until": lease_until}
    row = execute(session, _CLAIM, params).first()
    if row is None:
        return None
    return ClaimedStep(run_id, step_key, *tuple(row))


_FORGET_EARLY = (
    update(STEPS)
    .where(THIS_STEP, one_of(STEPS.c.status, STEP_CLAIMABLE), STEPS.c.due_at > _NOW)
    .values(dispatched_at=None, redispatch_count=0)
)


def forget_early_message(
    session: Session, run_id: uuid.UUID, step_key: str, *, now: dt.datetime
) -> bool:
    """A message came before the step's due time: it is forgotten, so that the sweeper sends
    the step again for that time. False if the step is not waiting for a later time."""
    result = execute(session, _FORGET_EARLY, {"rid": run_id, "key": step_key, "now": now})
    return bool(result.rowcount == 1)


# A running run of an automation whose runs are being cancelled (a stop with `cancel_runs`, a
# deletion: cancels.mark_cancelling) is cancelled to its steps, before a slice of the cancel
# reaches it: none of its steps starts from the stop's commit on.
_STATUS_SEEN = case(
    (
        and_(RUNS.c.status == RunStatus.RUNNING, AUTOMATIONS.c.runs_cancelling_at.is_not(None)),
        literal(RunStatus.CANCELLED.value),
    ),
    else_=RUNS.c.status,
).label("status")
_RUN_CONTEXT = (
    select(
        RUNS.c.id,
        RUNS.c.automation_id,
        RUNS.c.version_id,
        RUNS.c.event_id,
        _STATUS_SEEN,
        RUNS.c.created_at,
        RUNS.c.started_at,
        EVENTS.c.payload,
        *_CONTACT_COLUMNS,
    )
    .select_from(
        RUNS.join(AUTOMATIONS, AUTOMATIONS.c.id == RUNS.c.automation_id)
        .outerjoin(EVENTS, EVENTS.c.id == RUNS.c.event_id)
        .outerjoin(CONTACTS, CONTACTS.c.id == RUNS.c.contact_id)
    )
    .where(RUNS.c.id == bindparam("rid"))
    .with_for_update(of=RUNS)
)


def lock_run_context(session: Session, run_id: uuid.UUID) -> RunContext | None:
    """The run (locked for this transaction), its trigger event's payload and its contact."""
    row = execute(session, _RUN_CONTEXT, {"rid": run_id}).first()
    return _context(session, tuple(row)) if row is not None else None


def _context(session: Session, values: tuple[Any, ...]) -> RunContext:
    """A RunContext from the columns of _RUN_CONTEXT, in order; the run's rollup key noted,
    and its start (the row is locked: it stays so until the commit)."""
    run = RunRow(*values[:7])
    payload, contact_id = values[7], values[8]
    contact = ContactRow(*values[8:]) if contact_id is not None else None
    rollup.note_run_known(
        session, run.id, run.automation_id, run.created_at, locked_started_at=run.started_at
    )
    return RunContext(run=run, event_payload=payload or {}, contact=contact)


def _claimed_with_context(claimed: CTE, *also: FromClause) -> Select[Any]:
    """PostgreSQL: the `claimed` step's columns, then its run's context (the run locked), then
    each of `also`'s (one row at most, outer-joined): one round trip. The step row is claimed
    (and locked) by the CTE before the run row is locked: the executor's lock order."""
    joined = (
        claimed.join(RUNS, RUNS.c.id == bindparam("rid"))
        .join(AUTOMATIONS, AUTOMATIONS.c.id == RUNS.c.automation_id)
        .outerjoin(EVENTS, EVENTS.c.id == RUNS.c.event_id)
        .outerjoin(CONTACTS, CONTACTS.c.id == RUNS.c.contact_id)
    )
    for extra in also:
        joined = joined.outerjoin(extra, true())
    columns = [*claimed.c, *_RUN_CONTEXT.selected_columns, *(c for e in also for c in e.c)]
    return select(*columns).select_from(joined).with_for_update(of=RUNS)


_CLAIMED = _CLAIM.cte("claimed")
_CLAIM_WITH_CONTEXT = _claimed_with_context(_CLAIMED)


@functools.cache
def _claim_with_context_contact_first(step_types: frozenset[str]) -> Select[Any]:
    """PostgreSQL: `lock_contact_first`, the claim and the run's context in one round trip,
    for a step of one of these types, which lock their contact.

    The lock order is kept: the uncorrelated condition on the claim is evaluated once, before
    the step is looked for (a one-time filter), and it locks the contact. One snapshot serves
    the whole statement, taken before any wait for that lock: the contact is read from its
    locked row (the newest version, or none if it was deleted meanwhile), not from the
    snapshot, as the step and run rows are (their own locks give their newest versions)."""
    contact_locked = locked_first(_contact_of_step(step_types), "contact_locked")
    claimed_after_contact = _CLAIM.where(after_locking(contact_locked)).cte("claimed")
    return _claimed_with_context(claimed_after_contact, contact_locked)


def claim_with_context(
    session: Session,
    run_id: uuid.UUID,
    step_key: str,
    *,
    now: dt.datetime,
    lease_until: dt.datetime,
    contact_first: frozenset[str] = frozenset(),
) -> tuple[ClaimedStep, RunContext] | None:
    """`claim_step`, then `lock_run_context`; None if the step was not claimable. With
    `contact_first`, `lock_contact_first` for those step types before anything else.

    One statement on PostgreSQL. A claimed step always has its run (steps are deleted with it).
    """
    if session.get_bind().dialect.name != "postgresql":
        if contact_first:
            lock_contact_first(session, run_id, step_key, contact_first)
        claimed = claim_step(session, run_id, step_key, now=now, lease_until=lease_until)
        context = lock_run_context(session, run_id) if claimed is not None else None
        return (claimed, context) if claimed is not None and context is not None else None
    params: dict[str, Any] = {
        "rid": run_id,
        "key": step_key,
        "now": now,
        "lease_until": lease_until,
    }
    statement = _CLAIM_WITH_CONTEXT
    if contact_first:
        statement = _claim_with_context_contact_first(contact_first)
    row = execute(session, statement, params).first()
    if row is None:
        return None
    values = tuple(row)
    claimed_width, context_width = len(_CLAIMED.c), len(_RUN_CONTEXT.selected_columns)
    claimed = ClaimedStep(run_id, step_key, *values[:claimed_width])
    read = values[claimed_width : claimed_width + context_width]
    if claimed.step_type in contact_first:
        locked = values[claimed_width + context_width :]
        read = read[: -len(locked)] + locked
    return claimed, _context(session, read)


@dataclass(frozen=True)
class Along(Generic[T]):
    """A read of one row that a step makes in its claim transaction, made by the claim's own
    statement on PostgreSQL: `select` takes the step's `rid` and `key` and its `params`, and
    reads no locked row (it sees the claim statement's snapshot, as a statement right after
    the claim would see everything committed before the claim); `parse` turns its row, its
    columns as attributes, into what the step reads."""

    select: Select[Any]
    params: Mapping[str, Any]
    parse: Callable[[Any], T]


@functools.cache
def _claim_with_context_along(read: Select[Any]) -> Select[Any]:
    return _claimed_with_context(_CLAIMED, read.subquery("along"))


def claim_with_context_along(
    session: Session,
    run_id: uuid.UUID,
    step_key: str,
    along: Along[T],
    *,
    now: dt.datetime,
    lease_until: dt.datetime,
) -> tuple[ClaimedStep, RunContext, T | None] | None:
    """`claim_with_context` for a step that does not lock its contact, and `along`'s row read
    by the same statement: one round trip for both. On SQLite the claim alone, and None for
    `along`: the step reads it itself."""
    if session.get_bind().dialect.name != "postgresql":
        found = claim_with_context(session, run_id, step_key, now=now, lease_until=lease_until)
        return (*found, None) if found is not None else None
    params = {"rid": run_id, "key": step_key, "now": now, "lease_until": lease_until}
    row = execute(session, _claim_with_context_along(along.select), {**along.params, **params})
    values = row.first()
    if values is None:
        return None
    claimed_width, context_width = len(_CLAIMED.c), len(_RUN_CONTEXT.selected_columns)
    claimed = ClaimedStep(run_id, step_key, *values[:claimed_width])
    context = _context(session, tuple(values[claimed_width : claimed_width + context_width]))
    names = along.select.selected_columns.keys()
    read = SimpleNamespace(**dict(zip(names, values[claimed_width + context_width :], strict=True)))
    return claimed, context, along.parse(read)


_OWNED_STATUS = (
    select(STEPS.c.status)
    .where(THIS_STEP, STEPS.c.attempt == bindparam("owned_attempt"))
    .with_for_update()
)


def owns_step(session: Session, run_id: uuid.UUID, step_key: str, attempt: int) -> bool:
    """Whether the step is still running under this attempt (no one re-claimed it), locked."""
    params = {"rid": run_id, "key": step_key, "owned_attempt": attempt}
    status = execute(session, _OWNED_STATUS, params).scalar()
    return bool(status == StepStatus.RUNNING)


_OWNED_CTE = _OWNED_STATUS.cte("owned")
# PostgreSQL: `owns_step` and the run's context in one round trip; the step row is locked (in
# the CTE) before the run row, the executor's lock order.
_OWNS_WITH_CONTEXT = (
    select(_OWNED_CTE.c.status, *_RUN_CONTEXT.selected_columns)
    .select_from(
        RUNS.join(AUTOMATIONS, AUTOMATIONS.c.id == RUNS.c.automation_id)
        .outerjoin(_OWNED_CTE, true())
        .outerjoin(EVENTS, EVENTS.c.id == RUNS.c.event_id)
        .outerjoin(CONTACTS, CONTACTS.c.id == RUNS.c.contact_id)
    )
    .where(RUNS.c.id == bindparam("rid"))
    .with_for_update(of=RUNS)
)


def owns_with_context(
    session: Session, run_id: uuid.UUID, step_key: str, attempt: int
) -> tuple[bool, RunContext | None]:
    """`owns_step`, and the run's context (locked) as `lock_run_context` reads it.

    One statement on PostgreSQL, where the run is locked whether or not the step is owned.
    """
    if session.get_bind().dialect.name != "postgresql":
        owned = owns_step(session, run_id, step_key, attempt)
        return owned, lock_run_context(session, run_id) if owned else None
    params = {"rid": run_id, "key": step_key, "owned_attempt": attempt}
    row = execute(session, _OWNS_WITH_CONTEXT, params).first()
    if row is None:  # the run is gone
        return owns_step(session, run_id, step_key, attempt), None
    status, *context = tuple(row)
    return status == StepStatus.RUNNING, _context(session, tuple(context))


_OWNED_STEP = (
    select(
        STEPS.c.step_type,
        STEPS.c.attempt,
        STEPS.c.started_at,
        STEPS.c.created_at,
        STEPS.c.due_at,
        STEPS.c.output,
    )
    .where(
        THIS_STEP,
        STEPS.c.attempt == bindparam("owned_attempt"),
        STEPS.c.status == StepStatus.RUNNING,
    )
    .with_for_update()
)


def owned_with_context(
    session: Session,
    run_id: uuid.UUID,
    step_key: str,
    attempt: int,
    *,
    contact_first: frozenset[str] = frozenset(),
) -> tuple[ClaimedStep, RunContext] | None:
    """The step, if it still runs under this claim (locked), and its run's context (locked).
    With `contact_first`, `lock_contact_first` for those step types before anything else."""
    if contact_first:
        lock_contact_first(session, run_id, step_key, contact_first)
    params = {"rid": run_id, "key": step_key, "owned_attempt": attempt}
    row = execute(session, _OWNED_STEP, params).first()
    context = lock_run_context(session, run_id) if row is not None else None
    if row is None or context is None:
        return None
    return ClaimedStep(run_id, step_key, *tuple(row)), context
