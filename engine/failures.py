"""Unexpected exceptions in a step: each is a failed try, recorded in a transaction of its own.

The step's transaction rolled back with the exception, its claim included, so without this the
step would be offered again and again and its run would never end. Here such a failure counts
against the retry policy like a transient one, and an error that cannot change fails the step
at once. The API shows a message a person can act on; the stack trace goes to the log.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from engine.db import retry_on_disconnect, transaction
from engine.dispatch import Dispatch
from engine.errors import AutomationsError, StepFailure, TransientStepFailure
from engine.headers import INVALID_HEADER_VALUE
from engine.outcomes import Failed, Retry
from engine.progress import StepRef, cancel_step, record_outcome
from engine.retry import RetryPolicy
from engine.runtime import Runtime
from engine.store import attempts as attempt_store
from engine.store import claims
from models.enums import RunStatus

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"
# What Python's email package says of a header value with a line break in it.
_HEADER_LINE_BREAK = "linefeed or carriage return"


@dataclass(frozen=True)
class UnexpectedFailure:
    message: str
    code: str
    # True when trying again cannot help: the step fails at once.
    permanent: bool

    def as_step_failure(self) -> StepFailure:
        kind = StepFailure if self.permanent else TransientStepFailure
        return kind(self.message, code=self.code)


def classify(exc: BaseException) -> UnexpectedFailure:
    """What an exception means for its step; never its text, which may hold data or secrets."""
    if isinstance(exc, StepFailure):
        permanent = not isinstance(exc, TransientStepFailure)
        return UnexpectedFailure(exc.message, exc.code, permanent)
    if isinstance(exc, AutomationsError):
        return UnexpectedFailure(exc.message, exc.code, permanent=True)
    if isinstance(exc, ValueError) and _HEADER_LINE_BREAK in str(exc):
        return UnexpectedFailure(
            "A header of the email (subject, from, to or reply-to) would contain a line break "
            "(CR or LF), which could inject other headers; check the values rendered into it",
            INVALID_HEADER_VALUE,
            permanent=True,
        )
    return UnexpectedFailure(
        f"The step raised an unexpected error ({type(exc).__name__}); the worker's log has "
        "its stack trace under this run id and step key",
        INTERNAL_ERROR,
        permanent=False,
    )


def decide(
    failure: UnexpectedFailure, failures: int, policy: RetryPolicy, now: dt.datetime
) -> Failed | Retry:
    """Fail the step, or try it again later, after its `failures`-th failed try."""
    if failure.permanent:
        return Failed(failure.message, failure.code)
    retry_at = policy.next_attempt_at(failures, now)
    if retry_at is None:
        return Failed(f"{failure.message} (gave up after {failures} attempts)", failure.code)
    return Retry(due_at=retry_at, message=failure.message, code=failure.code)


def record_unexpected_failure(
    rt: Runtime,
    run_id: uuid.UUID,
    step_key: str,
    exc: Exception,
    *,
    tried_at: dt.datetime,
    owned_attempt: int | None = None,
) -> list[Dispatch]:
    """Record `exc` as a failed try of the step; what to enqueue after.

    `owned_attempt` is the claim a worker holds when its claim had committed before the
    exception (a send in progress); otherwise the step is claimed again here.
    """
    log.error("step raised an unexpected error", exc_info=exc)
    failure = classify(exc)
    try:
        return retry_on_disconnect(
            lambda: _record(rt, run_id, step_key, failure, tried_at, owned_attempt)
        )
    except DBAPIError:
        # The database is away: the step stays as it was, and the sweeper offers it again.
        log.warning("could not record the step's failure", exc_info=True)
        raise exc from None


def _record(
    rt: Runtime,
    run_id: uuid.UUID,
    step_key: str,
    failure: UnexpectedFailure,
    tried_at: dt.datetime,
    owned_attempt: int | None,
) -> list[Dispatch]:
    now = rt.clock.now()
    with transaction(rt.sessions) as session:
        if owned_attempt is None:
            lease_until = now + rt.lease
            found = claims.claim_with_context(
                session, run_id, step_key, now=now, lease_until=lease_until
            )
        else:
            found = claims.owned_with_context(session, run_id, step_key, owned_attempt)
        if found is None:
            log.info("step is in another worker's hands; this failure is not counted")
            return []
        claimed, run = found
        ref = StepRef(run_id, step_key, claimed.step_type)
        if run.run.status != RunStatus.RUNNING:
            cancel_step(session, ref, now)
            return []
        failures = attempt_store.count_failed_attempt(session, run_id, step_key)
        outcome = decide(failure, failures, rt.retry_policy, now)
        graph = rt.graph(session, run.run.version_id)
        return record_outcome(
            session, rt, graph, ref, outcome, now=now, tried_at=tried_at, ends_transaction=True
        )
