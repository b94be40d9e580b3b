"""Recording a step's outcome and deciding what the run does next: the one place of transitions."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine.dispatch import Dispatch
from engine.graph import Graph, dead_steps
from engine.outcomes import Completed, Failed, Outcome, Retry, Skipped, Waiting
from engine.runtime import Runtime
from engine.step_types import is_instant, spec_for
from engine.store import attempts as attempt_store
from engine.store import cancels as cancel_store
from engine.store import runs as run_store
from engine.store.core import Carried
from engine.store.runs import StepState, new_step_row
from engine.transitions import final_run_status
from models.enums import (
    STEP_ACTIVE,
    ConnectionType,
    RunStatus,
    SkipReason,
    StepStatus,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRef:
    run_id: uuid.UUID
    step_key: str
    step_type: str


@dataclass(frozen=True)
class RunStart:
    """A new run's rows, and the messages for the steps after its trigger."""

    run: dict[str, Any]
    steps: list[dict[str, Any]]
    dispatches: list[Dispatch]
    # The trigger is the whole graph: the run is over as soon as it starts.
    ended: bool


def start_run(
    graph: Graph,
    *,
    run_id: uuid.UUID,
    automation_id: uuid.UUID,
    version_id: uuid.UUID,
    contact_id: uuid.UUID,
    event_id: uuid.UUID,
    now: dt.datetime,
    replay_of: uuid.UUID | None = None,
) -> RunStart:
    """A run of `graph` for this event and contact, its trigger step already completed.

    The trigger step is the ingestion itself: it completes in the transaction that stores the
    run, and the steps after it are created pending.
    """
    run = run_store.new_run_row(
        run_id, automation_id, version_id, contact_id, event_id, now, replay_of=replay_of
    )
    trigger = graph.trigger
    steps = [
        new_step_row(
            run_id,
            trigger.key,
            trigger.type,
            now,
            status=StepStatus.COMPLETED,
            output={"event_id": str(event_id)},
            branch=ConnectionType.DEFAULT,
        )
    ]
    following = [graph.step(key) for key in graph.next_steps(trigger.key, ConnectionType.DEFAULT)]
    steps.extend(new_step_row(run_id, step.key, step.type, now) for step in following)
    dispatches = [
        Dispatch(run_id, step.key, step.type, version_id=version_id) for step in following
    ]
    return RunStart(run, steps, dispatches, ended=not following)


def record_outcome(
    session: Session,
    rt: Runtime,
    graph: Graph,
    step: StepRef,
    outcome: Outcome,
    *,
    now: dt.datetime,
    contact_gone: bool = False,
    advance: bool = True,
    tried_at: dt.datetime | None = None,
    ends_transaction: bool = False,
    carried: Carried | None = None,
    claim_until: dt.datetime | None = None,
) -> list[Dispatch]:
    """Write the outcome, create the next steps, end the run if nothing is left.

    With `advance=False` only the step's own result is written (its run was cancelled meanwhile).
    `tried_at` is when the try that led to a Retry began (default `now`), for its audit.
    `ends_transaction`: the caller commits next and writes nothing more, so the last statement
    written here may carry the transaction's rollup upsert.
    `carried`: a write of the transaction not yet made (an outbox row marked sent), made in
    the statement that writes the step's end where it can be, else alone just before it; so
    is a Completed outcome's own (a contact's change, a new membership).
    `claim_until`: the first instant step that follows is created claimed, its lease until
    then, for the caller to execute inline next (its Dispatch is `claimed`): the claim
    rides on this commit instead of committing on its own.
    """
    if isinstance(outcome, Completed) and outcome.carried is not None:
        assert carried is None, "a step carries one write"
        carried = outcome.carried
    if isinstance(outcome, Waiting | Retry):
        if carried is not None:
            carried.run(session)  # a parked step's end has no statement to carry it
        if isinstance(outcome, Retry):
            error = {"message": outcome.message, "code": outcome.code}
            attempt_store.archive_attempt(
                session,
                step.run_id,
                step.step_key,
                status=StepStatus.FAILED,
                started_at=tried_at or now,
                completed_at=now,
                error=error,
            )
        return _park(session, rt, step, outcome, now, graph.version_id)
    branch = _branch(outcome)
    targets = graph.next_steps(step.step_key, branch) if advance and branch is not None else []
    following = [graph.step(key) for key in targets] if not contact_gone else []
    inline = next((s.key for s in following if is_instant(s.type)), None) if claim_until else None
    rows = [
        new_step_row(
            step.run_id, s.key, s.type, now, claimed_until=claim_until if s.key == inline else None
        )
        for s in following
    ]
    last = advance and not following
    # Only a branch not taken can leave steps dead; a condition with one branch has none.
    skips = bool(following) and _leaves_dead_steps(graph, step, branch)
    states = _finish_step(
        session,
        step,
        outcome,
        now,
        then_insert=rows,
        read_states=last,
        last_write=ends_transaction and advance and bool(following) and not skips,
        carried=carried,
    )
    if not advance:
        return []
    if following:
        if skips:
            _skip_dead_branches(session, graph, step.run_id, now)
        return [
            Dispatch(
                step.run_id, s.key, s.type, claimed=s.key == inline, version_id=graph.version_id
            )
            for s in following
        ]
    _end_run(
        session,
        graph,
        step.run_id,
        states,
        now,
        contact_gone=contact_gone,
        last_write=ends_transaction,
    )
    return []


def _leaves_dead_steps(graph: Graph, step: StepRef, branch: ConnectionType | None) -> bool:
    return spec_for(step.step_type).branching and any(
        c.type != branch for c in graph.outgoing(step.step_key)
    )


def cancel_step(session: Session, step: StepRef, now: dt.datetime) -> None:
    """End a step of a cancelled run: it takes no further part."""
    cancel_store.cancel_step(session, step.run_id, step.step_key, step.step_type, now)


def _branch(outcome: Completed | Failed | Skipped) -> ConnectionType | None:
    """The connection the run goes on with; None after a failure (or a skip that ends it)."""
    return None if isinstance(outcome, Failed) else outcome.branch


def _park(
    session: Session,
    rt: Runtime,
    step: StepRef,
    outcome: Waiting | Retry,
    now: dt.datetime,
    version_id: uuid.UUID | None,
) -> list[Dispatch]:
    due_at = outcome.due_at
    soon = due_at is not None and due_at - now <= rt.horizon
    values: dict[str, Any] = {
        "due_at": due_at,
        "lease_expires_at": None,
        "dispatched_at": now if soon else None,
        # Parked anew: a later re-send by the sweeper starts its backoff from the beginning.
        "redispatch_count": 0,
    }
    if isinstance(outcome, Waiting):
        values.update(
            status=StepStatus.WAITING,
            started_at=now,
            output=outcome.output,
            wait_event=outcome.wait_event,
        )
    else:
        values.update(
            status=StepStatus.PENDING, error={"message": outcome.message, "code": outcome.code}
        )
    run_store.update_step(session, step.run_id, step.step_key, **values)
    log.info("step %s until %s", values["status"], due_at.isoformat() if due_at else "an event")
    if not soon or due_at is None:
        return []
    countdown = max((due_at - now).total_seconds(), 0.0)
    return [Dispatch(step.run_id, step.step_key, step.step_type, countdown, version_id=version_id)]


def _finish_step(
    session: Session,
    step: StepRef,
    outcome: Completed | Failed | Skipped,
    now: dt.datetime,
    *,
    then_insert: list[dict[str, Any]],
    read_states: bool,
    last_write: bool,
    carried: Carried | None,
) -> list[StepState]:
    error = None
    skip_reason = None
    if isinstance(outcome, Completed):
        status = StepStatus.COMPLETED
    elif isinstance(outcome, Skipped):
        status, skip_reason = StepStatus.SKIPPED, outcome.reason
    else:
        status = StepStatus.FAILED
        error = {"message": outcome.message, "code": outcome.code}
    states = run_store.finish_step(
        session,
        step.run_id,
        step.step_key,
        step_type=step.step_type,
        status=status,
        now=now,
        output=outcome.output,
        error=error,
        skip_reason=skip_reason,
        branch=_branch(outcome),
        then_insert=then_insert,
        read_states=read_states,
        last_write=last_write,
        carried=carried,
    )
    log.info("step %s%s", status, f": {error['message']}" if error else "")
    return states


def _skip_steps(
    session: Session,
    graph: Graph,
    run_id: uuid.UUID,
    keys: list[str],
    reason: SkipReason,
    now: dt.datetime,
) -> None:
    rows = [
        new_step_row(
            run_id, key, graph.step(key).type, now, status=StepStatus.SKIPPED, skip_reason=reason
        )
        for key in keys
    ]
    run_store.insert_steps(session, rows)


def _skip_dead_branches(
    session: Session, graph: Graph, run_id: uuid.UUID, now: dt.datetime
) -> None:
    states = run_store.step_states(session, run_id)
    active = {s.step_key for s in states if s.status in STEP_ACTIVE}
    taken = {
        s.step_key: ConnectionType(s.branch) if s.branch else None
        for s in states
        if s.status not in STEP_ACTIVE
    }
    dead = dead_steps(graph, active=active, taken=taken)
    _skip_steps(session, graph, run_id, dead, SkipReason.BRANCH_NOT_TAKEN, now)


def _end_run(
    session: Session,
    graph: Graph,
    run_id: uuid.UUID,
    states: list[StepState],
    now: dt.datetime,
    *,
    contact_gone: bool,
    last_write: bool,
) -> None:
    """End the run if none of its steps (`states`, read after the last one ended) is active;
    `last_write`: the caller commits next (see runs.finish_run)."""
    if any(s.status in STEP_ACTIVE for s in states):
        return
    summary = [
        (
            s.step_type,
            StepStatus(s.status),
            SkipReason(s.skip_reason) if s.skip_reason else None,
        )
        for s in states
    ]
    status = final_run_status(summary)
    if status in (RunStatus.COMPLETED, RunStatus.SKIPPED):
        # A run that ended normally accounts for every step: the rest were not on its path.
        recorded = {s.step_key for s in states}
        rest = [key for key in graph.order() if key not in recorded]
        reason = SkipReason.CONTACT_DELETED if contact_gone else SkipReason.BRANCH_NOT_TAKEN
        _skip_steps(session, graph, run_id, rest, reason, now)
    run_store.finish_run(session, run_id, status, now, last_write=last_write)
    log.info("run %s", status, extra={"run_id": str(run_id)})
