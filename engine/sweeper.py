"""The sweeper: promotes timers into countdowns, recovers lost and abandoned steps."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import worker_loss
from engine.bulk import kick_stale
from engine.db import retry_on_disconnect, transaction
from engine.dispatch import CancelWork, Dispatch, Dispatcher, Message, commit_then_dispatch
from engine.redispatch import RedispatchPolicy
from engine.runtime import Runtime
from engine.settings import Settings
from engine.store import cancels as cancel_store
from engine.store import idempotency as idempotency_store
from engine.store import paging, sweeps
from engine.store.sweeps import DispatchMark, DueStep
from engine.sweeper_health import record_tick


def redispatch_policy(settings: Settings) -> RedispatchPolicy:
    return RedispatchPolicy(
        stale_after=dt.timedelta(seconds=settings.stale_after_seconds),
        max_backoff=dt.timedelta(seconds=settings.redispatch_backoff_max_seconds),
    )


@dataclass(frozen=True)
class Swept:
    """What a transaction of the sweeper found to send once it has committed."""

    dispatches: list[Message]


def tick(rt: Runtime, dispatcher: Dispatcher) -> int:
    """One sweeper tick in its own transaction, once more on a connection found dead (after a
    database restart); what it found is dispatched after the commit. The number dispatched."""

    def swept() -> Swept:
        return commit_then_dispatch(
            transaction(rt.sessions),
            dispatcher,
            lambda session: Swept(sweep(session, rt, now=rt.clock.now())),
        )

    dispatched = len(retry_on_disconnect(swept).dispatches)
    stale_after = redispatch_policy(rt.settings).stale_after
    resume_cancels(rt, dispatcher, idle_before=rt.clock.now() - stale_after)
    return dispatched


def resume_cancels(rt: Runtime, dispatcher: Dispatcher, *, idle_before: dt.datetime) -> int:
    """Send anew the message of each cancel of runs (a stop's, a deletion's) that made no
    progress since `idle_before`: the process or message carrying it was lost. Its own short
    transaction, which locks nothing but the marks, skipping those locked by a slice under way.
    The number of cancels resumed."""
    resumed = commit_then_dispatch(
        transaction(rt.sessions),
        dispatcher,
        lambda session: Swept(
            [
                CancelWork(automation_id)
                for automation_id in cancel_store.stalled_cancels(
                    session, before=idle_before, now=rt.clock.now()
                )
            ]
        ),
    )
    return len(resumed.dispatches)


def take_over(rt: Runtime, dispatcher: Dispatcher) -> int:
    """Free every step for the first tick, at the start of the only process that executes this
    database's steps (the embedded mode, which holds its data dir): the worker that held a
    lease is dead and every message is lost, so waiting out leases and the stale delay would
    only hold the runs back. Running bulk operations are sent again, and cancels of runs go on.
    The number of steps freed.
    """
    now = rt.clock.now()
    with transaction(rt.sessions) as session:
        freed = sweeps.release_all(session, now)
        bulks = kick_stale(session, idle_before=now, now=now)
    dispatcher.dispatch(bulks)
    resume_cancels(rt, dispatcher, idle_before=now)
    return freed


def sweep(session: Session, rt: Runtime, *, now: dt.datetime) -> list[Message]:
    """One tick: the steps to enqueue, each marked as dispatched in this transaction, and the
    bulk operations whose message was lost."""
    settings = rt.settings
    policy = redispatch_policy(settings)
    promoted = sweeps.steps_to_promote(
        session, horizon_end=now + rt.horizon, limit=settings.sweeper_batch_size
    )
    abandoned, overdue = _steps_to_resend(
        session, policy, now=now, budget=settings.sweeper_max_redispatch_per_tick
    )
    # Each takeover counts its worker's death; a step past the bound fails instead.
    abandoned = worker_loss.take_over(session, rt, abandoned, now=now)
    marks = [
        # A timer's promotion is a normal dispatch: its re-send series starts again.
        *(DispatchMark(step.run_id, step.step_key, 0) for step in promoted),
        *(
            DispatchMark(
                step.run_id,
                step.step_key,
                policy.after_lease_expiry(
                    step.redispatch_count,
                    dispatched_at=step.dispatched_at,
                    lease_expires_at=step.lease_expires_at,
                ),
            )
            for step in abandoned
        ),
        *(
            DispatchMark(step.run_id, step.step_key, policy.after_stale(step.redispatch_count))
            for step in overdue
        ),
    ]
    sweeps.mark_dispatched(session, marks, now)
    # Idempotency-Key answers are kept 24 hours; each tick forgets a batch of older ones.
    idempotency_store.delete_expired(session, now)
    paging.forget_gone(session, now)  # deleted items' positions, kept a week for page cursors
    bulks = kick_stale(session, idle_before=now - policy.stale_after, now=now)
    # Last: two overlapping ticks wait for each other on this row only while committing.
    record_tick(session, now)
    return [*(_dispatch(step, now) for step in [*promoted, *abandoned, *overdue]), *bulks]


def _steps_to_resend(
    session: Session, policy: RedispatchPolicy, *, now: dt.datetime, budget: int
) -> tuple[list[DueStep], list[DueStep]]:
    """Abandoned and lost steps, at most `budget` together; the rest wait for the next tick.

    Abandoned steps come first: there are few (one per worker slot that died), and each holds a
    run that has already started its step.
    """
    sent_before = policy.sent_before(now)
    abandoned = sweeps.steps_abandoned(session, now=now, sent_before=sent_before, limit=budget)
    budget -= len(abandoned)
    if budget <= 0:
        return abandoned, []
    overdue = sweeps.steps_overdue(
        session, stale_before=now - policy.stale_after, sent_before=sent_before, limit=budget
    )
    return abandoned, overdue


def _dispatch(step: DueStep, now: dt.datetime) -> Dispatch:
    countdown = max((step.due_at - now).total_seconds(), 0.0) if step.due_at else 0.0
    return Dispatch(step.run_id, step.step_key, step.step_type, countdown=countdown)
