"""Execute one step of one run: claim, execute from stored state and `now`, record, decide next."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from engine.db import retry_on_disconnect, transaction
from engine.dispatch import Dispatch
from engine.errors import NotFound
from engine.failures import record_unexpected_failure
from engine.logs import step_context
from engine.outcomes import Completed, Outcome, Retry, Skipped
from engine.progress import StepRef, cancel_step, record_outcome
from engine.runtime import Runtime
from engine.step_types import (
    Delivery,
    StepTypeSpec,
    contact_lockers,
    find,
    is_instant,
    locks_contact,
    spec_for,
)
from engine.steps.context import StepRun
from engine.store import claims
from engine.store import runs as run_store
from models.enums import RunStatus, SkipReason

log = logging.getLogger(__name__)


def execute_step(
    rt: Runtime,
    run_id: uuid.UUID,
    step_key: str,
    step_type: str | None = None,
    *,
    claim_apart: bool = False,
    version_id: uuid.UUID | None = None,
) -> list[Dispatch]:
    """Run one step if it is due and unclaimed, then the instant steps of its run that it made
    ready, up to `inline_steps` of them; the steps to enqueue once this returns.

    `step_type`, the type the message was sent for, spares a step that does not lock its
    contact the statement that would (the row's own type decides, whatever the message says:
    a step that does, claimed for a message naming another type, is claimed again in order).
    `version_id`, the run's automation version as the message names it, lets the claim's
    statement make the step's own first read too (`StepTypeSpec.reads_on_claim`): the step's
    config is known before the claim. The run's own version decides: a read made for another
    is dropped, and the step reads for itself.

    `claim_apart`: each step's claim commits before the step executes, for an executor that
    dies with its whole process (the embedded one, a solo Celery worker). A prefork worker's
    parent process outlives a child that a step killed and counts that death; nothing outlives
    the others, so the committed claim is the trace the sweeper counts. A step executed inline
    is created claimed by the transaction of the step before it (`record_outcome`'s
    `claim_until`), so only a task execution's first step commits a claim of its own.

    An inline step is executed as if its message had arrived: its own claim, transaction, commit
    and log line. A crash between two of them leaves the next one ready in SQL (or claimed,
    its lease to run out), where the sweeper finds it as it finds a lost message (or a dead
    worker's step).
    """
    bound = rt.settings.inline_steps
    pending = _execute_one(
        rt, run_id, step_key, step_type, claim_apart, rides=bound > 0, version_id=version_id
    )
    done = 0
    while (following := _next_inline(pending, more=done < bound)) is not None:
        pending.remove(following)
        done += 1
        rt.checkpoint("inline.before_step")
        pending.extend(
            _execute_one(
                rt,
                following.run_id,
                following.step_key,
                following.step_type,
                claim_apart,
                rides=done < bound,
                claimed=following.claimed,
            )
        )
    if done:
        # The inline steps are committed and what follows them not yet sent: a fault test
        # kills the process here, where only the sweeper can find the next step.
        rt.checkpoint("inline.before_publish")
    return pending


def _next_inline(pending: list[Dispatch], *, more: bool) -> Dispatch | None:
    """The step to execute inline next: one created claimed for this process, which no other
    can take before its lease runs out; else, while the bound allows, the first instant one."""
    claimed = next((d for d in pending if d.claimed), None)
    if claimed is not None or not more:
        return claimed
    return next((d for d in pending if d.countdown == 0 and is_instant(d.step_type)), None)


def _execute_one(
    rt: Runtime,
    run_id: uuid.UUID,
    step_key: str,
    step_type: str | None,
    claim_apart: bool,
    *,
    rides: bool,
    claimed: bool = False,
    version_id: uuid.UUID | None = None,
) -> list[Dispatch]:
    """One step; with `claim_apart` and `rides`, the instant step it makes ready next is
    created claimed for this process (see execute_step). `claimed`: this step was."""
    with step_context(run_id=str(run_id), step_key=step_key):
        tried_at = rt.clock.now()
        held = _Held(run_store.FIRST_CLAIM) if claimed else _Held()
        rides = claim_apart and rides
        try:
            if (
                claim_apart
                and held.attempt is None
                and not retry_on_disconnect(lambda: _claim(rt, run_id, step_key, held))
            ):
                return []
            # Re-running is safe: a step whose claim committed is not claimable a second time,
            # and one held apart is executed only under its claim.
            try:
                return retry_on_disconnect(
                    lambda: _execute(rt, run_id, step_key, step_type, held, rides, version_id)
                )
            except _ContactNotLockedFirst:  # the message named another type: in order now
                return retry_on_disconnect(
                    lambda: _execute(rt, run_id, step_key, None, held, rides)
                )
        except Exception as exc:
            return record_unexpected_failure(
                rt, run_id, step_key, exc, tried_at=tried_at, owned_attempt=held.attempt
            )


class _ContactNotLockedFirst(Exception):
    """The message named a type that does not lock its contact, the step's row one that does:
    its claim, which took the step and run before the contact, is rolled back, to be made
    again in the lock order (contact, step, run)."""


@dataclass
class _Held:
    """The claim this worker holds once a claim has committed (claimed apart, created claimed
    for an inline step, a send)."""

    attempt: int | None = None
    # When a claim apart was taken: the step executes as of then, as one claimed with it does.
    # (A step created claimed executes as of its own start: its claim may be a chain old.)
    claimed_at: dt.datetime | None = None


def _claim(rt: Runtime, run_id: uuid.UUID, step_key: str, held: _Held) -> bool:
    """Claim the step in a transaction of its own, noted in `held`; False if not claimable."""
    now = rt.clock.now()
    with transaction(rt.sessions) as session:
        claimed = claims.claim_step(session, run_id, step_key, now=now, lease_until=now + rt.lease)
        if claimed is None:
            _not_claimable(session, run_id, step_key, now)
            return False
    held.attempt, held.claimed_at = claimed.attempt, now
    return True


def _not_claimable(session: Session, run_id: uuid.UUID, step_key: str, now: dt.datetime) -> None:
    # Early (a host whose clock is ahead fired its countdown): sent again for its time by the
    # sweeper's next tick, rather than once it looks lost, past due.
    if claims.forget_early_message(session, run_id, step_key, now=now):
        log.info("message before the step's due time: the sweeper sends it again")
    else:
        log.debug("step not claimable: duplicate or stale message")


def _hold(
    session: Session,
    rt: Runtime,
    run_id: uuid.UUID,
    step_key: str,
    step_type: str | None,
    held: _Held,
    now: dt.datetime,
    version_id: uuid.UUID | None,
) -> tuple[claims.ClaimedStep, claims.RunContext, object] | None:
    """Claim the step, or lock it under the claim held apart, with its run's context and what
    its claim's statement read for it (None if nothing); None if there is nothing to execute.
    `_ContactNotLockedFirst` if the row's type locks its contact and the message's did not say
    so: the contact must come before the step and run."""
    contact_first = (
        contact_lockers() if step_type is None or locks_contact(step_type) else frozenset()
    )
    read: object = None
    if held.attempt is not None:
        found = claims.owned_with_context(
            session, run_id, step_key, held.attempt, contact_first=contact_first
        )
        if found is None:
            log.info("step is in another worker's hands: its lease ran out")
    else:
        lease_until = now + rt.lease
        along = (
            None if contact_first else _read_on_claim(session, rt, step_key, step_type, version_id)
        )
        if along is not None:
            with_read = claims.claim_with_context_along(
                session, run_id, step_key, along, now=now, lease_until=lease_until
            )
            found = with_read[:2] if with_read is not None else None
            read = with_read[2] if with_read is not None else None
        else:
            found = claims.claim_with_context(
                session,
                run_id,
                step_key,
                now=now,
                lease_until=lease_until,
                contact_first=contact_first,
            )
        if found is None:
            _not_claimable(session, run_id, step_key, now)
    if found is None:
        return None
    row_type = found[0].step_type
    if row_type not in contact_first and locks_contact(row_type):
        raise _ContactNotLockedFirst  # rolls back what it locked, step and run first
    if found[1].run.version_id != version_id:
        read = None  # made for another version's step: the step reads for itself
    return found[0], found[1], read


def _read_on_claim(
    session: Session,
    rt: Runtime,
    step_key: str,
    step_type: str | None,
    version_id: uuid.UUID | None,
) -> claims.Along[Any] | None:
    """The read the step makes first, for its claim's statement to make, if the message named
    the run's version and the step's type reads on its claim (its config gives the read)."""
    spec = find(step_type) if step_type is not None and version_id is not None else None
    if spec is None or spec.reads_on_claim is None:
        return None
    assert version_id is not None
    try:
        step = rt.graph(session, version_id).step(step_key)
    except (NotFound, KeyError):  # a message of another deployment's making: no read
        return None
    return spec.reads_on_claim(step.config) if step.type == spec.name else None


def _execute(
    rt: Runtime,
    run_id: uuid.UUID,
    step_key: str,
    step_type: str | None,
    held: _Held,
    rides: bool,
    version_id: uuid.UUID | None = None,
) -> list[Dispatch]:
    now = held.claimed_at or rt.clock.now()
    claim_until = now + rt.lease if rides else None
    with transaction(rt.sessions) as session:
        rt.checkpoint("step.before_contact_lock")
        found = _hold(session, rt, run_id, step_key, step_type, held, now, version_id)
        if found is None:
            return []
        claimed, run, read = found
        rt.checkpoint("step.claimed")
        spec = spec_for(claimed.step_type)
        ref = StepRef(run_id, step_key, spec.name)
        if run.run.status != RunStatus.RUNNING:
            cancel_step(session, ref, now)
            return []
        graph = rt.graph(session, run.run.version_id)
        if run.contact is None:
            abandon = spec.delivery.abandon if spec.delivery is not None else None
            output = abandon(session, ref) if abandon is not None else {}
            gone = Skipped(SkipReason.CONTACT_DELETED, branch=None, output=output)
            return record_outcome(
                session, rt, graph, ref, gone, now=now, contact_gone=True, ends_transaction=True
            )
        sr = StepRun(session, rt, graph, graph.step(step_key), claimed, run, now, claim_read=read)
        rt.checkpoint(f"{spec.name}.handler")
        if spec.delivery is None:
            assert spec.handler is not None
            outcome = spec.handler(sr)
            deleted = spec.deletes_contact and isinstance(outcome, Completed)
            return record_outcome(
                session,
                rt,
                graph,
                ref,
                outcome,
                now=now,
                contact_gone=deleted,
                ends_transaction=True,
                claim_until=claim_until,
            )
        prepared = spec.delivery.prepare(sr)
        if isinstance(prepared, Outcome):
            return record_outcome(
                session,
                rt,
                graph,
                ref,
                prepared,
                now=now,
                ends_transaction=True,
                claim_until=claim_until,
            )
        if not sr.start_stamped:
            run_store.mark_started(session, run_id, step_key, now)
    held.attempt = claimed.attempt
    return _deliver(rt, spec, ref, claimed.attempt, prepared, tried_at=now, rides=rides)


def _deliver(
    rt: Runtime,
    spec: StepTypeSpec,
    ref: StepRef,
    attempt: int,
    prepared: object,
    *,
    tried_at: dt.datetime,
    rides: bool,
) -> list[Dispatch]:
    """The side effect of a delivery step, with no transaction open, then its record."""
    assert spec.delivery is not None
    # What to deliver is committed: a crash from here on is recovered by re-running the step,
    # which finds it and delivers with the same id (an email's Message-ID, Idempotency-Key).
    rt.checkpoint(f"{spec.name}.before_send")
    result = spec.delivery.deliver(rt, prepared)
    rt.checkpoint(f"{spec.name}.after_send")
    return _record_delivery(
        rt, spec.delivery, ref, attempt, prepared, result, tried_at=tried_at, rides=rides
    )


# Pauses between attempts to record a send whose database went away meanwhile.
RECORD_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 4.0)


def _record_delivery(
    rt: Runtime,
    delivery: Delivery[Any],
    ref: StepRef,
    attempt: int,
    prepared: object,
    result: object,
    *,
    tried_at: dt.datetime,
    rides: bool,
) -> list[Dispatch]:
    """Record the send, trying again for a few seconds if the database is unreachable.

    Giving up here leaves the step running until its lease ends, and a re-run sends the email
    again (same Message-ID): worth a few seconds of retrying, which cover a database restart
    or a dropped connection.
    """
    for delay in RECORD_RETRY_DELAYS:
        try:
            return _finish_delivery(rt, delivery, ref, attempt, prepared, result, tried_at, rides)
        except (OperationalError, InterfaceError):
            log.warning("could not record the send; retrying in %.1f s", delay, exc_info=True)
            time.sleep(delay)
    return _finish_delivery(rt, delivery, ref, attempt, prepared, result, tried_at, rides)


def _finish_delivery(
    rt: Runtime,
    delivery: Delivery[Any],
    ref: StepRef,
    attempt: int,
    prepared: object,
    result: object,
    tried_at: dt.datetime,
    rides: bool,
) -> list[Dispatch]:
    now = rt.clock.now()
    with transaction(rt.sessions) as session:
        owned, run = claims.owns_with_context(session, ref.run_id, ref.step_key, attempt)
        outcome, carried = delivery.record(session, rt, ref, prepared, result, owned, now)
        running = run is not None and run.run.status == RunStatus.RUNNING
        if carried is not None and not (owned and outcome is not None and running):
            carried.run(session)  # no step's end of ours to carry it: made alone, now
            carried = None
        if not owned or outcome is None:
            # Our lease ran out and another worker took the step over; it records its own
            # attempts, and a failure of ours must not overwrite its success.
            return []
        if run is None:
            return []
        graph = rt.graph(session, run.run.version_id)
        if not running:
            # A step already sending finishes, but a cancelled run takes no further step.
            if isinstance(outcome, Retry):
                cancel_step(session, ref, now)
                return []
            record_outcome(session, rt, graph, ref, outcome, now=now, advance=False)
            return []
        return record_outcome(
            session,
            rt,
            graph,
            ref,
            outcome,
            now=now,
            tried_at=tried_at,
            ends_transaction=True,
            carried=carried,
            claim_until=now + rt.lease if rides else None,
        )
