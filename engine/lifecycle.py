"""Automations over time: create, edit (a new version), stop, duplicate, delete; cancel runs."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine.db import transaction
from engine.dispatch import CancelWork, Dispatcher, Message
from engine.errors import Conflict, InvalidInput, NotFound
from engine.graph import validate_graph
from engine.runtime import Runtime
from engine.store import automations as automation_store
from engine.store import cancels as cancel_store
from engine.store import recovery as recovery_store
from engine.store import runs as run_store
from engine.stored_text import check_text
from models.enums import AutomationStatus, RunStatus
from models.tables import Automation

COPY_SUFFIX = " (Copy)"
RUNS_BEING_CANCELLED = "runs_being_cancelled"
# Why a bulk retry or replay ended with runs not done: the runs it had not reached are skipped.
AUTOMATION_DELETED = "The automation was deleted: its runs can no longer be retried or replayed"
RUNS_CANCELLED = (
    "The automation was stopped with its runs cancelled: the runs this operation had not "
    "reached were left as they were"
)


def _status(value: object) -> AutomationStatus:
    try:
        return AutomationStatus(str(value))
    except ValueError:
        raise InvalidInput("`status` must be `enabled` or `disabled`", field="status") from None


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise InvalidInput(
            "`name` must be a non-empty string of at most 255 characters", field="name"
        )
    check_text(value, "name")
    return value


def create_automation(
    session: Session,
    *,
    name: object,
    steps: object,
    connections: object,
    status: object = AutomationStatus.DISABLED,
    now: dt.datetime,
) -> Automation:
    """Validate the graph and store the automation with its first version."""
    checked_name, checked_status = _name(name), _status(status)
    graph = validate_graph(steps, connections)
    return automation_store.create_automation(
        session,
        name=checked_name,
        status=checked_status,
        graph=graph.to_dict(),
        trigger_event=graph.event_name,
        now=now,
    )


def cancelling(automation_id: uuid.UUID) -> Conflict:
    """The refusal of what would start or resume a run while the automation's are cancelled."""
    return Conflict(
        f"The runs of automation {automation_id} are being cancelled (a stop with `cancel_runs`"
        ", or its deletion): try again once none is left running",
        code=RUNS_BEING_CANCELLED,
    )


def _get(session: Session, automation_id: uuid.UUID) -> Automation:
    # Not FOR UPDATE: a stop waits for its runs' contacts and steps, and a step that writes its
    # run's row twice (contact_delete) has the row's foreign key checked again, which key-share
    # locks the automation. Ingestion share-locks its listeners, so as to wait for a stop.
    automation = automation_store.lock_automation(session, automation_id)
    if automation is None:
        raise NotFound("Automation not found")
    return automation


def update_automation(
    session: Session, automation_id: uuid.UUID, changes: dict[str, Any], *, now: dt.datetime
) -> Automation:
    """Rename, enable/disable, or replace the graph (a new version; disabled automations only)."""
    if not changes:
        raise InvalidInput("Give at least one of `name`, `status`, or `steps` with `connections`")
    if ("steps" in changes) != ("connections" in changes):
        raise InvalidInput("`steps` and `connections` must be given together", field="steps")
    automation = _get(session, automation_id)
    name = _name(changes["name"]) if "name" in changes else None
    status = _status(changes["status"]) if "status" in changes else None
    if "steps" in changes:
        if automation.status == AutomationStatus.ENABLED and status != AutomationStatus.DISABLED:
            raise InvalidInput(
                "Cannot edit the steps of an enabled automation: disable it first", field="steps"
            )
        graph = validate_graph(changes["steps"], changes["connections"])
        automation_store.add_version(
            session, automation, graph=graph.to_dict(), trigger_event=graph.event_name, now=now
        )
    if status == AutomationStatus.ENABLED and automation.runs_cancelling_at is not None:
        raise cancelling(automation_id)
    if name is not None:
        automation.name = name
    if status is not None:
        automation.status = status
    automation.updated_at = now
    session.flush()
    return automation


def stop_automation(
    session: Session, automation_id: uuid.UUID, *, cancel_runs: bool, now: dt.datetime
) -> None:
    """Disable: no new runs. Runs in flight go on, unless `cancel_runs`: they are marked to be
    cancelled, and their steps see them as cancelled from the commit on (`cancel_marked_runs`
    then cancels them, a slice per transaction; `stop` does both), and its bulk retries and
    replays under way end, leaving the runs they had not reached as they were."""
    _get(session, automation_id)
    automation_store.set_status(session, automation_id, AutomationStatus.DISABLED, now)
    if cancel_runs:
        cancel_store.mark_cancelling(session, automation_id, now)
        recovery_store.end_running_bulks(session, automation_id, error=RUNS_CANCELLED, now=now)


def delete_automation(session: Session, automation_id: uuid.UUID, *, now: dt.datetime) -> None:
    """Remove the automation from every list; its unfinished runs are marked to be cancelled, as
    by `stop_automation` (`delete` cancels them too), and its bulk operations under way end."""
    _get(session, automation_id)
    cancel_store.mark_cancelling(session, automation_id, now)
    recovery_store.end_running_bulks(session, automation_id, error=AUTOMATION_DELETED, now=now)
    automation_store.mark_deleted(session, automation_id, now)


# How long a stop's or a deletion's request cancels runs at most (about 150,000 on our 2-core
# hosts) before it answers and sends the rest to the workers: an HTTP client or a proxy would
# give up on a longer wait (the CLI's waits 30 s). Their steps see the runs left cancelled
# meanwhile.
REQUEST_SECONDS = 10.0
# How long one worker's message cancels runs (a few slices) before it sends itself again,
# behind whatever is queued: a cancel holds a worker slot no longer than a slow step.
WORK_SECONDS = 1.0


def stop(
    rt: Runtime, dispatcher: Dispatcher, automation_id: uuid.UUID, *, cancel_runs: bool
) -> Cancelling | None:
    """`stop_automation` in its transaction, then `cancel_in_request` if `cancel_runs`."""
    with transaction(rt.sessions) as session:
        stop_automation(session, automation_id, cancel_runs=cancel_runs, now=rt.clock.now())
    return cancel_in_request(rt, dispatcher, automation_id) if cancel_runs else None


def delete(rt: Runtime, dispatcher: Dispatcher, automation_id: uuid.UUID) -> Cancelling:
    """`delete_automation` in its transaction, then `cancel_in_request`."""
    with transaction(rt.sessions) as session:
        delete_automation(session, automation_id, now=rt.clock.now())
    return cancel_in_request(rt, dispatcher, automation_id)


@dataclass(frozen=True)
class Cancelling:
    """How far `cancel_marked_runs` went: the runs it cancelled; whether none is left."""

    automation_id: uuid.UUID
    cancelled: int
    finished: bool

    @property
    def dispatches(self) -> list[Message]:
        """The message that carries on a cancel not finished."""
        return [] if self.finished else [CancelWork(self.automation_id)]


def cancel_in_request(rt: Runtime, dispatcher: Dispatcher, automation_id: uuid.UUID) -> Cancelling:
    """`cancel_marked_runs` for REQUEST_SECONDS at most, the rest sent to the workers."""
    cancelling = cancel_marked_runs(rt, automation_id, seconds=REQUEST_SECONDS)
    dispatcher.dispatch(cancelling.dispatches)
    return cancelling


def work_cancel(rt: Runtime, automation_id: uuid.UUID) -> list[Message]:
    """A worker's share of a cancel: WORK_SECONDS of slices; the message for the rest."""
    return cancel_marked_runs(rt, automation_id, seconds=WORK_SECONDS).dispatches


def cancel_marked_runs(
    rt: Runtime, automation_id: uuid.UUID, *, seconds: float | None = None
) -> Cancelling:
    """Cancel the unfinished runs of an automation marked by a stop or a deletion, a slice per
    transaction, oldest first, until none is left (the mark then goes) or `seconds` have
    passed (the caller sends `dispatches` for the rest).

    No transaction holds more than a slice's locks: events for the other runs' contacts go on
    meanwhile. Each slice stamps the mark: a cancel under way, which the sweeper leaves alone
    (it sends the message anew for one whose stamp grew old: its process or message was lost)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    cancelled, finished, slowest = 0, False, 0.0
    while not finished:
        started = time.monotonic()
        with transaction(rt.sessions) as session:
            sliced = cancel_store.cancel_slice(session, automation_id, rt.clock.now())
            rt.checkpoint("cancel.before_commit")
        cancelled, finished = cancelled + sliced.cancelled, sliced.finished
        ended = time.monotonic()
        slowest = max(slowest, ended - started)
        # Within `seconds`: no slice starts that would end past them, were it the slowest yet.
        if deadline is not None and ended + slowest > deadline:
            break
    return Cancelling(automation_id, cancelled, finished)


def duplicate_automation(
    session: Session, automation_id: uuid.UUID, *, now: dt.datetime
) -> Automation:
    """A disabled copy with the current graph, named like Resend's: "<name> (Copy)"."""
    source = _get(session, automation_id)
    graph = None
    if source.current_version_id is not None:
        graph = automation_store.version_graph(session, source.current_version_id)
    if graph is None:
        raise NotFound("Automation not found")
    return automation_store.create_automation(
        session,
        name=source.name[: 255 - len(COPY_SUFFIX)] + COPY_SUFFIX,
        status=AutomationStatus.DISABLED,
        graph=graph,
        trigger_event=source.trigger_event,
        now=now,
    )


def cancel_run(
    session: Session, automation_id: uuid.UUID, run_id: uuid.UUID, *, now: dt.datetime
) -> None:
    """Stop a run before its next step; a step already sending finishes."""
    if automation_store.get_automation(session, automation_id) is None:
        raise NotFound("Automation not found")
    run = run_store.get_run(session, run_id)
    if run is None or run.automation_id != automation_id:
        raise NotFound("Run not found")
    if run.status == RunStatus.CANCELLED:
        return
    if run.status != RunStatus.RUNNING:
        raise Conflict(f"Run is already {run.status} and cannot be cancelled")
    cancel_store.cancel_run(session, run_id, now)
