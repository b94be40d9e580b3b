"""Steps whose execution kills their worker: each death counted, the step failed after a bound.

A step that kills the process running it (the OOM killer, a crash in a C extension) raises no
exception for the retry policy to count: Celery requeues its message when a pool child dies,
the sweeper takes over a lease that ran out, and the step would kill the next worker forever.
Two signals count a death, neither on the path of a step that ends normally: the worker's parent
process, told that its child was lost while running the step's task (tasks/lost_workers.py), and
the sweeper, taking over a lease that ran out (the worker died or hangs).

One death counts once. A running step's death is its claim's (`attempt`): whichever signal
counts it first stamps `lost_attempt`, and the other finds the claim counted. A claim whose
lease ran out is taken over only once its death is counted: a message delivered again (the
broker's visibility timeout, a duplicate) finds it not claimable, and the sweeper's takeover
counts it, then sends the step again. A death before
the claim committed (an instant step's transaction, rolled back with the process) leaves no
claim to stamp, and only the parent process sees it. A hang the sweeper counted and a kill of
the same worker reported later may count two: a step fails early only after a bound of them.

The embedded executor and a solo Celery worker (`--pool solo`, any pool but prefork) have no
parent process: their claims commit before their steps run (`claim_apart` in
engine/executor.py, tasks/lost_workers.py's `ClaimPolicy`), so each death leaves a claim that
the sweeper takes over and counts (the next start's, for the embedded one). The message the dead
worker held, back at the next one while a claim holds the step, is dropped: the step waits for
the takeover rather than running twice or killing again.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from sqlalchemy.orm import Session

from engine.db import transaction
from engine.logs import step_context
from engine.outcomes import Failed
from engine.progress import StepRef, cancel_step, record_outcome
from engine.runtime import Runtime
from engine.store import attempts as attempt_store
from engine.store import claims, sweeps
from engine.store.sweeps import DueStep
from models.enums import RunStatus, StepStatus

log = logging.getLogger(__name__)

WORKER_LOST = "worker_lost"


def lost(losses: int) -> Failed:
    """The failure of a step whose worker died `losses` times while running it."""
    return Failed(
        f"The worker running this step died {losses} times while running it (killed, out of "
        "memory, crashed, or hung past its lease); it is not run again. Find the cause in the "
        "workers' logs and the system's (OOM killer), then retry the run",
        WORKER_LOST,
    )


def losses_after_takeover(step: DueStep) -> int:
    """The step's count once the sweeper takes over its claim: its death counts unless the
    worker's parent process counted it already."""
    return step.worker_losses + (0 if step.lost_attempt == step.attempt else 1)


def record_lost_worker(rt: Runtime, run_id: uuid.UUID, step_key: str) -> bool:
    """Count a death of the worker running the step, in one transaction; True if the step
    failed on it (its message is done with), False if it runs again."""
    with step_context(run_id=str(run_id), step_key=step_key), transaction(rt.sessions) as session:
        now = rt.clock.now()
        loss = attempt_store.count_worker_loss(session, run_id, step_key)
        if loss is None:
            return False
        log.warning("the worker died running the step (%d times)", loss.losses)
        if loss.losses < rt.settings.step_max_worker_losses:
            return False
        running = loss.status == StepStatus.RUNNING
        return fail_step(
            session, rt, run_id, step_key, loss.attempt if running else None, loss.losses, now
        )


def take_over(
    session: Session, rt: Runtime, abandoned: list[DueStep], *, now: dt.datetime
) -> list[DueStep]:
    """Count the death of each abandoned step's claim and fail the steps at the bound, in the
    sweeper's transaction (the steps are locked by their read); the steps to send again."""
    sweeps.count_lost_claims(
        session, [step for step in abandoned if step.lost_attempt != step.attempt]
    )
    bound = rt.settings.step_max_worker_losses
    again = [step for step in abandoned if losses_after_takeover(step) < bound]
    # Their runs in id order, as a contact's deletion and a stop lock theirs: read by lease, two
    # runs could be taken in the order opposite to theirs, each side then waiting for the other.
    for step in sorted(abandoned, key=lambda step: step.run_id):
        losses = losses_after_takeover(step)
        if losses < bound:
            continue
        with step_context(run_id=str(step.run_id), step_key=step.step_key):
            fail_step(session, rt, step.run_id, step.step_key, step.attempt, losses, now)
    return again


def fail_step(
    session: Session,
    rt: Runtime,
    run_id: uuid.UUID,
    step_key: str,
    attempt: int | None,
    losses: int,
    now: dt.datetime,
) -> bool:
    """Fail the step for its worker deaths, held under claim `attempt` (a running step) or
    claimed here; False if it is not due (it is left as it is)."""
    if attempt is not None:
        found = claims.owned_with_context(session, run_id, step_key, attempt)
    else:
        found = claims.claim_with_context(
            session, run_id, step_key, now=now, lease_until=now + rt.lease
        )
    if found is None:
        return False
    claimed, run = found
    ref = StepRef(run_id, step_key, claimed.step_type)
    if run.run.status != RunStatus.RUNNING:
        cancel_step(session, ref, now)
        return True
    graph = rt.graph(session, run.run.version_id)
    record_outcome(session, rt, graph, ref, lost(losses), now=now)
    return True
