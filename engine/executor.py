"""Execute one step of one run: claim, execute from stored state and `now`, record, decide next."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import InterfaceError, OperationalError

from engine.db import retry_on_disconnect, transaction
from engine.dispatch import Dispatch
from engine.errors import StepFailure, TransientStepFailure
from engine.failures import record_unexpected_failure
from engine.logs import step_context
from engine.outcomes import Completed, Failed, Outcome, Retry, Skipped
from engine.progress import StepRef, cancel_step, record_outcome
from engine.runtime import Runtime
from engine.steps.contacts import run_add_to_segment, run_contact_delete, run_contact_update
from engine.steps.context import StepRun
from engine.steps.email import PreparedEmail, deliver, prepare_email
from engine.steps.flow import run_condition, run_delay, run_trigger
from engine.steps.wait import run_wait_for_event
from engine.store import claims
from engine.store import outbox as outbox_store
from engine.store import runs as run_store
from models.enums import INSTANT_STEPS, OutboxStatus, RunStatus, SkipReason, StepType

log = logging.getLogger(__name__)

Handler = Callable[[StepRun], Outcome]

HANDLERS: dict[StepType, Handler] = {
    StepType.TRIGGER: run_trigger,
    StepType.DELAY: run_delay,
    StepType.CONDITION: run_condition,
    StepType.WAIT_FOR_EVENT: run_wait_for_event,
    StepType.CONTACT_UPDATE: run_contact_update,
    StepType.CONTACT_DELETE: run_contact_delete,
    StepType.ADD_TO_SEGMENT: run_add_to_segment,
}


def execute_step(rt: Runtime, run_id: uuid.UUID, step_key: str) -> list[Dispatch]:
    """Run one step if it is due and unclaimed, then the instant steps of its run that it made
    ready, up to `inline_steps` of them; the steps to enqueue once this returns.

    An inline step is executed as if its message had arrived: its own claim, transaction, commit
    and log line. A crash between two of them leaves the next one ready in SQL, where the
    sweeper finds it as it finds a lost message.
    """
    pending = _execute_one(rt, run_id, step_key)
    for _ in range(rt.settings.inline_steps):
        following = next((d for d in pending if _inline(d)), None)
        if following is None:
            break
        pending.remove(following)
        rt.checkpoint("inline.before_step")
        pending.extend(_execute_one(rt, following.run_id, following.step_key))
    return pending


def _inline(dispatch: Dispatch) -> bool:
    return dispatch.countdown == 0 and dispatch.step_type in INSTANT_STEPS


def _execute_one(rt: Runtime, run_id: uuid.UUID, step_key: str) -> list[Dispatch]:
    with step_context(run_id=str(run_id), step_key=step_key):
        tried_at = rt.clock.now()
        held = _Held()
        try:
            # Re-running is safe: a step whose claim committed is not claimable a second time.
            return retry_on_disconnect(lambda: _execute(rt, run_id, step_key, held))
        except Exception as exc:
            return record_unexpected_failure(
                rt, run_id, step_key, exc, tried_at=tried_at, owned_attempt=held.attempt
            )


@dataclass
class _Held:
    """The claim this worker holds once a claim has committed (a send in progress)."""

    attempt: int | None = None


def _execute(rt: Runtime, run_id: uuid.UUID, step_key: str, held: _Held) -> list[Dispatch]:
    now = rt.clock.now()
    with transaction(rt.sessions) as session:
        found = claims.claim_with_context(
            session, run_id, step_key, now=now, lease_until=now + rt.lease
        )
        if found is None:
            log.debug("step not claimable: duplicate or stale message")
            return []
        rt.checkpoint("step.claimed")
        claimed, run = found
        ref = StepRef(run_id, step_key, StepType(claimed.step_type))
        if run.run.status != RunStatus.RUNNING:
            cancel_step(session, ref, now)
            return []
        graph = rt.graph(session, run.run.version_id)
        if run.contact is None:
            gone = Skipped(SkipReason.CONTACT_DELETED, branch=None)
            return record_outcome(session, rt, graph, ref, gone, now=now, contact_gone=True)
        sr = StepRun(session, rt, graph, graph.step(step_key), claimed, run, now)
        if ref.step_type != StepType.SEND_EMAIL:
            rt.checkpoint(f"{ref.step_type}.handler")
            outcome = HANDLERS[ref.step_type](sr)
            deleted = ref.step_type == StepType.CONTACT_DELETE and isinstance(outcome, Completed)
            return record_outcome(session, rt, graph, ref, outcome, now=now, contact_gone=deleted)
        rt.checkpoint("send_email.handler")
        prepared = prepare_email(sr)
        if not isinstance(prepared, PreparedEmail):
            return record_outcome(session, rt, graph, ref, prepared, now=now)
        run_store.update_step(session, run_id, step_key, started_if_unset=now)
    held.attempt = claimed.attempt
    # The outbox row is committed: a crash from here on is recovered by re-running the step,
    # which finds the row and sends with the same email id (Message-ID, Idempotency-Key).
    rt.checkpoint("send_email.before_send")
    result = deliver(rt, prepared)
    rt.checkpoint("send_email.after_send")
    return _record_email(rt, ref, claimed.attempt, prepared, result, tried_at=now)


# Pauses between attempts to record a send whose database went away meanwhile.
RECORD_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 4.0)


def _record_email(
    rt: Runtime,
    ref: StepRef,
    attempt: int,
    prepared: PreparedEmail,
    result: str | StepFailure,
    *,
    tried_at: dt.datetime,
) -> list[Dispatch]:
    """Record the send, trying again for a few seconds if the database is unreachable.

    Giving up here leaves the step running until its lease ends, and a re-run sends the email
    again (same Message-ID): worth a few seconds of retrying, which cover a database restart
    or a dropped connection.
    """
    for delay in RECORD_RETRY_DELAYS:
        try:
            return _finish_email(rt, ref, attempt, prepared, result, tried_at)
        except (OperationalError, InterfaceError):
            log.warning("could not record the send; retrying in %.1f s", delay, exc_info=True)
            time.sleep(delay)
    return _finish_email(rt, ref, attempt, prepared, result, tried_at)


def _finish_email(
    rt: Runtime,
    ref: StepRef,
    attempt: int,
    prepared: PreparedEmail,
    result: str | StepFailure,
    tried_at: dt.datetime,
) -> list[Dispatch]:
    now = rt.clock.now()
    email_id = uuid.UUID(prepared.message.email_id)
    outcome: Outcome
    with transaction(rt.sessions) as session:
        owned = claims.owns_step(session, ref.run_id, ref.step_key, attempt)
        if isinstance(result, str):
            # It went out, whoever holds the step now: the outbox must say so.
            outbox_store.record_attempt(
                session, email_id, status=OutboxStatus.SENT, now=now, provider_message_id=result
            )
            outcome = Completed(output=prepared.output)
        elif owned:
            permanent = not isinstance(result, TransientStepFailure)
            status = OutboxStatus.FAILED if permanent else OutboxStatus.SENDING
            outbox_store.record_attempt(
                session, email_id, status=status, now=now, error=result.message
            )
            failures = claims.count_failed_attempt(session, ref.run_id, ref.step_key)
            outcome = _failure_outcome(rt, result, failures, now, prepared)
        if not owned:
            # Our lease ran out and another worker took the step over; it records its own
            # attempts, and a failure of ours must not overwrite its success.
            return []
        run = claims.lock_run_context(session, ref.run_id)
        if run is None:
            return []
        graph = rt.graph(session, run.run.version_id)
        if run.run.status != RunStatus.RUNNING:
            # A step already sending finishes, but a cancelled run takes no further step.
            if isinstance(outcome, Retry):
                cancel_step(session, ref, now)
                return []
            record_outcome(session, rt, graph, ref, outcome, now=now, advance=False)
            return []
        return record_outcome(session, rt, graph, ref, outcome, now=now, tried_at=tried_at)


def _failure_outcome(
    rt: Runtime, failure: StepFailure, failures: int, now: dt.datetime, prepared: PreparedEmail
) -> Outcome:
    """After the step's `failures`-th failed try: fail it, or try again later."""
    if not isinstance(failure, TransientStepFailure):
        return Failed(failure.message, failure.code, output=prepared.output)
    retry_at = rt.retry_policy.next_attempt_at(failures, now)
    if retry_at is None:
        message = f"{failure.message} (gave up after {failures} attempts)"
        return Failed(message, failure.code, output=prepared.output)
    return Retry(due_at=retry_at, message=failure.message, code=failure.code)
