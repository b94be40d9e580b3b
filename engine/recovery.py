"""Recovery of ended runs: retry a run from its failed (or cancelled) step, replay it anew.

A retry keeps the run: its pinned version, trigger event and contact. Steps that completed stay
completed, so an email already sent is never sent again; the failed step gets a new attempt and
its earlier try stays in its attempt history. A replay is a new run of the automation's current
version with the same trigger event and contact, for fixes to the graph itself.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine.db import transaction
from engine.dispatch import Dispatch
from engine.errors import AutomationsError, Conflict, Contended, InvalidInput, NotFound
from engine.graph import Graph
from engine.lifecycle import cancelling
from engine.progress import start_run
from engine.reports import require_automation
from engine.runtime import Runtime
from engine.store import attempts as attempt_store
from engine.store import automations as automation_store
from engine.store import contacts as contact_store
from engine.store import recovery as recovery_store
from engine.store import runs as run_store
from engine.store.recovery import RunState
from engine.store.runs import new_step_row
from models.enums import ConnectionType, RunStatus, StepStatus
from models.ids import new_id
from models.tables import Automation, RunStep


class RunNotRetryable(Conflict):
    code = "run_not_retryable"


class RunNotReplayable(Conflict):
    code = "run_not_replayable"


class RetryConflict(Contended):
    """Another request retried the run between our read and our write."""

    code = "run_retry_conflict"


class RetryFrom:
    """Where a retry starts: the `from` field of a retry request."""

    FAILED_STEP = "failed_step"
    CANCELLED_STEP = "cancelled_step"
    ALL = (FAILED_STEP, CANCELLED_STEP)


def parse_from(value: object) -> bool:
    """Whether a retry request's `from` asks for the cancelled step (True) or the failed one."""
    if value is None or value == RetryFrom.FAILED_STEP:
        return False
    if value == RetryFrom.CANCELLED_STEP:
        return True
    raise InvalidInput(
        f"`from` must be `{RetryFrom.FAILED_STEP}` or `{RetryFrom.CANCELLED_STEP}`", field="from"
    )


def parse_replays_seen(value: object) -> int | None:
    """A replay form's count of the run's replays when the page was shown (None: not given)."""
    if value is None or value == "":
        return None
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise InvalidInput(
            "`replays_seen` must be the number of replays the page showed", field="replays_seen"
        )
    return int(text)


@dataclass(frozen=True)
class Recovered:
    """The run a retry or replay put in motion, and what to enqueue once committed."""

    run_id: uuid.UUID
    dispatches: list[Dispatch]


def retry_run(
    rt: Runtime, automation_id: uuid.UUID, run_id: uuid.UUID, *, from_cancelled: bool = False
) -> Recovered:
    """Put a failed (or cancelled) run back to running from the step where it stopped.

    The run is read in one transaction and retried in another with a compare-and-set on its
    status and retry count, so that of two concurrent retries one takes effect and the other
    is told so (RetryConflict), whichever database runs them.
    """
    with transaction(rt.sessions) as session:
        seen = _run_of(session, automation_id, run_id)
        check_retryable(seen, from_cancelled=from_cancelled)
    rt.checkpoint("retry.read")
    with transaction(rt.sessions) as session:
        now = rt.clock.now()
        hold_automation(session, automation_id)  # deleted since the read: not found
        if not recovery_store.begin_retry(
            session, run_id, status=seen.status, retries=seen.retries, now=now
        ):
            raise _lost_race(session, seen)
        return Recovered(run_id, resume(session, rt, seen, now=now))


def retry_locked(
    session: Session,
    rt: Runtime,
    automation_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    from_cancelled: bool,
    matched_retries: int | None,
    now: dt.datetime,
    held: Automation | None = None,
) -> Recovered:
    """`retry_run` inside the caller's transaction, the run locked (bulk retries): a run
    retried since the operation matched it (`matched_retries`) is not retried again, nor one
    replayed (its emails went out again with the replay). `held`: the automation, which the
    caller holds already (`hold_automation`)."""
    hold_automation(session, automation_id, held=held)
    seen = _locked_run(session, automation_id, run_id)
    check_retryable(seen, from_cancelled=from_cancelled)
    _check_not_retried_since(seen, matched_retries, RunNotRetryable)
    replayed = recovery_store.replays_of(session, run_id)
    if replayed:  # since the operation matched it: its replay carries it on
        raise RunNotRetryable(f"Run was replayed (by run {replayed[0]}): its replay carries it on")
    recovery_store.begin_retry(session, run_id, status=seen.status, retries=seen.retries, now=now)
    return Recovered(run_id, resume(session, rt, seen, now=now))


def check_retryable(run: RunState, *, from_cancelled: bool) -> None:
    """Raise RunNotRetryable unless the run may be retried as asked."""
    if run.status == RunStatus.CANCELLED and not from_cancelled:
        raise RunNotRetryable(
            'Run is cancelled: retry it with {"from": "cancelled_step"} to resume it from the '
            "step where it was cancelled"
        )
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise RunNotRetryable(
            f"Run is {run.status}: only failed runs (and cancelled ones, with "
            '{"from": "cancelled_step"}) can be retried'
        )
    if run.contact_id is None:
        raise RunNotRetryable("The run's contact was deleted: the run cannot be retried")


_STOPPED_IN_CANCELLED = frozenset({StepStatus.CANCELLED, StepStatus.FAILED})


def resume(session: Session, rt: Runtime, run: RunState, *, now: dt.datetime) -> list[Dispatch]:
    """Reset the steps the run stopped at (their try kept as an attempt), create the steps a
    cancellation kept from being created, and return them to enqueue."""
    graph = rt.graph(session, run.version_id)
    rows = recovery_store.step_rows(session, run.id)
    # A cancelled run also stopped at a step that failed: one that was sending when the run
    # was cancelled finishes, and may fail then.
    stopped = _STOPPED_IN_CANCELLED if run.status == RunStatus.CANCELLED else {StepStatus.FAILED}
    again = [row for row in rows if row.status in stopped]
    missing = missing_steps(graph, rows)
    if not again and not missing:
        raise RunNotRetryable("Nothing is left to retry: every step on the run's path has ended")
    for row in again:
        attempt_store.archive_attempt(
            session,
            run.id,
            row.step_key,
            status=row.status,
            started_at=row.claimed_at or row.started_at,
            completed_at=row.completed_at or now,
            error=row.error,
        )
    recovery_store.reset_steps(session, run.id, [row.step_key for row in again], now)
    run_store.insert_steps(
        session, [new_step_row(run.id, key, graph.step(key).type, now) for key in missing]
    )
    keys = [row.step_key for row in again] + missing
    return [Dispatch(run.id, key, graph.step(key).type, version_id=run.version_id) for key in keys]


def missing_steps(graph: Graph, rows: Iterable[RunStep]) -> list[str]:
    """Steps that follow an ended step on the branch it took but were never created: a run
    cancelled while a step ran ends that step without going on."""
    recorded = {row.step_key for row in rows}
    missing: list[str] = []
    for row in rows:
        if row.status not in (StepStatus.COMPLETED, StepStatus.SKIPPED) or row.branch is None:
            continue
        for key in graph.next_steps(row.step_key, ConnectionType(row.branch)):
            if key not in recorded and key not in missing:
                missing.append(key)
    return missing


def replay_run(
    session: Session,
    rt: Runtime,
    automation_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    now: dt.datetime,
    once: bool = False,
    matched_retries: int | None = None,
    replays_seen: int | None = None,
    held: Automation | None = None,
) -> Recovered:
    """A new run of the automation's current version with the run's trigger event and contact.

    `once` (bulk replays): a run replayed already, by anyone, is not replayed again, nor one
    retried since the operation matched it (`matched_retries`). `replays_seen` (a page's
    form): the run must have that many replays still, so a form posted twice replays once. The
    old run is locked, so of two replays of it at once the second sees the first's. `held`:
    the automation, which the caller holds already (`hold_automation`).
    """
    automation = hold_automation(session, automation_id, held=held)
    _hold_contact_of(session, run_id)
    old = _locked_run(session, automation_id, run_id)
    rt.checkpoint("replay.run_locked")
    check_replayable(old)
    if once or replays_seen is not None:
        replayed = recovery_store.replays_of(session, run_id)
        if once and replayed:
            raise RunNotReplayable(f"Run was already replayed (by run {replayed[0]})")
        if replays_seen is not None and len(replayed) > replays_seen:
            raise RunNotReplayable(
                f"Run was replayed meanwhile (by run {replayed[-1]}); open it again to replay it"
                " once more"
            )
        _check_not_retried_since(old, matched_retries, RunNotReplayable)
    version_id = automation.current_version_id
    if version_id is None:
        raise NotFound("Automation not found")
    assert old.contact_id is not None and old.event_id is not None
    start = start_run(
        rt.graph(session, version_id),
        run_id=new_id(),
        automation_id=automation_id,
        version_id=version_id,
        contact_id=old.contact_id,
        event_id=old.event_id,
        now=now,
        replay_of=old.id,
    )
    run_store.insert_runs(session, [start.run])
    run_store.insert_steps(session, start.steps)
    if start.ended:
        run_store.finish_run(session, start.run["id"], RunStatus.COMPLETED, now)
    return Recovered(start.run["id"], start.dispatches)


def _hold_contact_of(session: Session, run_id: uuid.UUID) -> None:
    """Hold the run's contact (as the new run's foreign key will) before the run is locked: a
    deletion locks the contact, then its runs. One deleted meanwhile leaves the run with none."""
    seen = recovery_store.run_state(session, run_id)
    if seen is not None and seen.contact_id is not None:
        contact_store.get_contact(session, seen.contact_id, lock="key_share")


def _check_not_retried_since(
    run: RunState, matched_retries: int | None, refusal: type[Conflict]
) -> None:
    """A bulk operation takes a run as it matched it: retried since (by hand or by another
    operation), the run is no longer the one the filter chose, and may have sent its emails."""
    if matched_retries is not None and run.retries != matched_retries:
        raise refusal(f"Run was retried since the operation matched it; it is {run.status} now")


def check_replayable(run: RunState) -> None:
    if run.status == RunStatus.RUNNING:
        raise RunNotReplayable("Run is running: a run can be replayed once it has ended")
    if run.contact_id is None:
        raise RunNotReplayable("The run's contact was deleted: the run cannot be replayed")
    if run.event_id is None:
        raise RunNotReplayable("The event that started the run was deleted: it cannot be replayed")


def hold_automation(
    session: Session, automation_id: uuid.UUID, *, held: Automation | None = None
) -> Automation:
    """The automation, held against a deletion until this transaction ends (NotFound if gone):
    a run retried or replayed is either seen and cancelled by the deletion, or not made.
    `held`: the automation as this transaction holds it already (a bulk operation's chunk, for
    all its runs), not locked a second time."""
    automation = (
        held if held is not None else automation_store.hold_automation(session, automation_id)
    )
    if automation is None:
        raise NotFound("Automation not found")
    if automation.runs_cancelling_at is not None:  # the run would be seen cancelled at once
        raise cancelling(automation_id)
    return automation


def _run_of(session: Session, automation_id: uuid.UUID, run_id: uuid.UUID) -> RunState:
    require_automation(session, automation_id)
    return _found(recovery_store.run_state(session, run_id), automation_id)


def _locked_run(session: Session, automation_id: uuid.UUID, run_id: uuid.UUID) -> RunState:
    """The run, locked, once its automation is held (`hold_automation`)."""
    return _found(recovery_store.run_state(session, run_id, lock=True), automation_id)


def _found(run: RunState | None, automation_id: uuid.UUID) -> RunState:
    if run is None or run.automation_id != automation_id:
        raise NotFound("Run not found")
    return run


def _lost_race(session: Session, seen: RunState) -> AutomationsError:
    """Why the retry's compare-and-set found the run changed since it was read."""
    now_state = recovery_store.run_state(session, seen.id)
    if now_state is not None and now_state.retries != seen.retries:
        return RetryConflict(
            "Another request retried this run at the same time; it is running again"
        )
    status = now_state.status if now_state is not None else "gone"
    return RunNotRetryable(f"Run is {status}: it changed while the retry was being prepared")
