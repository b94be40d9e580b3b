"""Bulk retries and replays: the runs a filter matches, frozen when asked, worked in chunks.

The matched runs are written as items when the operation is created, so the set does not move
while it is worked. Workers take a chunk at a time, each chunk one transaction that retries or
replays its runs and marks their items done, then enqueue the next chunk behind whatever else
is queued: a bulk operation never holds a long transaction and never starves new runs. A chunk
lost with a worker is found by the sweeper (an operation without progress for a while).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from engine.clock import parse_timestamp
from engine.db import transaction
from engine.dispatch import BulkWork, Message
from engine.errors import AutomationsError, Conflict, InvalidInput, NotFound
from engine.failures import classify
from engine.json_limits import JsonLimits
from engine.lifecycle import AUTOMATION_DELETED, cancelling
from engine.recovery import (
    RunNotReplayable,
    RunNotRetryable,
    parse_from,
    replay_run,
    retry_locked,
)
from engine.reports import require_automation
from engine.runtime import Runtime
from engine.store import automations as automation_store
from engine.store import recovery as recovery_store
from engine.store.recovery import RunMatch
from models.enums import BulkAction, BulkItemStatus, BulkStatus, RunStatus, StepStatus
from models.tables import Automation, BulkItem, BulkOperation, Run

log = logging.getLogger(__name__)

CHUNK_SIZE = 50
# Runs one operation may take; a wider filter is refused with a hint to narrow it.
MAX_RUNS = 100_000
SAMPLE_SIZE = 10
_FIELDS = frozenset(
    {"status", "error_code", "step_key", "created_after", "created_before", "dry_run", "from"}
)
# The run statuses each action may take, and its default.
_ALLOWED = {
    BulkAction.RETRY: frozenset({RunStatus.FAILED, RunStatus.CANCELLED}),
    BulkAction.REPLAY: frozenset(
        {RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.COMPLETED, RunStatus.SKIPPED}
    ),
}


@dataclass(frozen=True)
class BulkRequest:
    action: BulkAction
    match: RunMatch
    dry_run: bool
    from_cancelled: bool
    # The filter as the caller gave it (dry_run left out), stored and shown back.
    filter: dict[str, Any]

    @property
    def filter_hash(self) -> str:
        """The same for requests that take the same runs, however written (a null field or
        one left out, a status list in another order, one instant in another offset)."""
        match = self.match

        def instant(value: dt.datetime | None) -> str | None:
            return None if value is None else value.astimezone(dt.UTC).isoformat()

        canonical = {
            "status": sorted(match.statuses),
            "error_code": match.error_code,
            "step_key": match.step_key,
            "created_after": instant(match.created_after),
            "created_before": instant(match.created_before),
            "from_cancelled": self.from_cancelled,
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"{self.action}\n{text}".encode()).hexdigest()


def parse_request(automation_id: uuid.UUID, action: BulkAction, body: object) -> BulkRequest:
    """A bulk request from its JSON body; InvalidInput naming the field otherwise."""
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown field `{unknown[0]}`", field=unknown[0])
    if action == BulkAction.REPLAY and body.get("from") is not None:
        raise InvalidInput(
            "`from` is for retries only: a replay starts a new run from the trigger", field="from"
        )
    from_cancelled = parse_from(body.get("from"))
    statuses = _statuses(body.get("status"), action)
    if RunStatus.CANCELLED in statuses and action == BulkAction.RETRY and not from_cancelled:
        raise InvalidInput(
            'Retrying cancelled runs needs `"from": "cancelled_step"`', field="status"
        )
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput("`dry_run` must be true or false", field="dry_run")
    match = RunMatch(
        automation_id=automation_id,
        statuses=statuses,
        step_statuses=(StepStatus.FAILED, StepStatus.CANCELLED),
        error_code=_text(body, "error_code"),
        step_key=_text(body, "step_key"),
        created_after=_time(body, "created_after"),
        created_before=_time(body, "created_before"),
    )
    kept = {key: value for key, value in body.items() if key != "dry_run"}
    kept["status"] = sorted(statuses)
    return BulkRequest(action, match, dry_run, from_cancelled, kept)


def _statuses(value: object, action: BulkAction) -> frozenset[RunStatus]:
    allowed = _ALLOWED[action]
    if value is None:
        return frozenset({RunStatus.FAILED})
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InvalidInput(
            "`status` must be a run status or a list of them (a comma-separated string too)",
            field="status",
        )
    chosen = {name.strip() for name in names}
    wrong = sorted(chosen - set(allowed))
    if wrong:
        raise InvalidInput(
            f"`status` `{wrong[0]}` is not allowed for a bulk {action}: use any of "
            f"{', '.join(sorted(allowed))}",
            field="status",
        )
    return frozenset(RunStatus(name) for name in chosen)


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 100:
        raise InvalidInput(f"`{name}` must be a string of 1 to 100 characters", field=name)
    JsonLimits().check(value, field=name)  # a NUL or a lone surrogate: PostgreSQL refuses it
    return value


def _time(body: dict[str, Any], name: str) -> dt.datetime | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"`{name}` must be an ISO 8601 timestamp", field=name)
    return parse_timestamp(value, name)


@dataclass(frozen=True)
class Preview:
    """What a dry run answers: how many runs would be taken, and the newest of them."""

    matched: int
    sample: list[Run]


@dataclass(frozen=True)
class Started:
    bulk: BulkOperation
    dispatches: list[Message]


def preview(session: Session, request: BulkRequest) -> Preview:
    require_automation(session, request.match.automation_id)
    matched = recovery_store.count_matching(session, request.match)
    return Preview(matched, recovery_store.sample_matching(session, request.match, SAMPLE_SIZE))


def start_bulk(session: Session, request: BulkRequest, *, now: dt.datetime) -> Started:
    """Create the operation with its items, or find the same one still running."""
    automation_id = request.match.automation_id
    # Locked: of two identical requests at once, the second waits and finds the first's.
    automation = automation_store.lock_automation(session, automation_id)
    if automation is None:
        raise NotFound("Automation not found")
    if automation.runs_cancelling_at is not None:  # each run would be refused in its turn
        raise cancelling(automation_id)
    same = recovery_store.running_bulk(session, automation_id, request.action, request.filter_hash)
    if same is not None:
        return Started(same, [])
    matched = recovery_store.count_matching(session, request.match)
    if matched > MAX_RUNS:
        raise InvalidInput(
            f"The filter matches {matched} runs, more than {MAX_RUNS} at once: narrow it with "
            "`created_after` and `created_before`",
            field="created_after",
        )
    bulk = recovery_store.create_bulk(
        session,
        automation_id=automation_id,
        action=request.action,
        filter_body=request.filter,
        filter_hash=request.filter_hash,
        match=request.match,
        now=now,
    )
    messages: list[Message] = [BulkWork(bulk.id)] if bulk.status == BulkStatus.RUNNING else []
    return Started(bulk, messages)


def get_bulk(
    session: Session, automation_id: uuid.UUID, bulk_id: uuid.UUID
) -> tuple[BulkOperation, list[BulkItem]]:
    """The operation and a sample of its items, the ones that did not go through first.

    Still there once its automation is deleted: the operator who started it reads how it
    ended (its runs not done by then skipped, see `work_chunk`)."""
    if not automation_store.automation_ever_existed(session, automation_id):
        raise NotFound("Automation not found")
    bulk = recovery_store.get_bulk(session, bulk_id)
    if bulk is None or bulk.automation_id != automation_id:
        raise NotFound("Bulk operation not found")
    return bulk, recovery_store.bulk_items(session, bulk_id, limit=SAMPLE_SIZE * 10)


def work_chunk(rt: Runtime, bulk_id: uuid.UUID, *, size: int = CHUNK_SIZE) -> list[Message]:
    """Retry or replay the next chunk of the operation's runs in one transaction; what to
    enqueue after it commits (the chunk's steps, and the next chunk while runs remain)."""
    with transaction(rt.sessions) as session:
        now = rt.clock.now()
        owner = recovery_store.bulk_owner(session, bulk_id)
        if owner is None:
            return []
        # The automation first, held to the commit, then the operation: the order of a stop's
        # or a deletion's transaction, which ends the running operations of its automation.
        automation = automation_store.hold_automation(session, owner)
        bulk = recovery_store.get_bulk(session, bulk_id, lock=True)
        if bulk is None or bulk.status != BulkStatus.RUNNING:
            return []
        if automation is None:  # deleted before deletions ended the operations they met
            _end_for_deleted_automation(session, bulk, now)
            return []
        messages: list[Message] = []
        items = recovery_store.pending_items(session, bulk_id, size)
        for run_id, retries in items:
            messages.extend(_work_item(session, rt, bulk, automation, run_id, retries, now))
        bulk.updated_at = now
        if len(items) < size:
            bulk.status, bulk.completed_at = BulkStatus.COMPLETED, now
            log.info("bulk %s completed: %d done, %d skipped", bulk.action, bulk.done, bulk.skipped)
        else:
            messages.append(BulkWork(bulk_id))
        rt.checkpoint("bulk.before_commit")
        return messages


BULK_CANCELLED = "The operation was cancelled before this run's turn: it was left as it was"


def cancel_bulk(
    session: Session, automation_id: uuid.UUID, bulk_id: uuid.UUID, *, now: dt.datetime
) -> BulkOperation:
    """Cancel a running operation: the runs it has not reached are left as they were (skipped,
    with the reason); those its chunks retried or replayed stay so. Cancelling it again
    answers it as it is; one that completed cannot be cancelled (Conflict)."""
    # The automation, then the operation: the order of a chunk, which waits, or ran first.
    if automation_store.hold_automation(session, automation_id) is None:
        raise NotFound("Automation not found")
    bulk = recovery_store.get_bulk(session, bulk_id, lock=True)
    if bulk is None or bulk.automation_id != automation_id:
        raise NotFound("Bulk operation not found")
    if bulk.status == BulkStatus.CANCELLED:
        return bulk
    if bulk.status != BulkStatus.RUNNING:
        raise Conflict(f"Bulk operation is already {bulk.status} and cannot be cancelled")
    bulk.skipped += recovery_store.skip_pending_items(
        session, bulk.id, error=BULK_CANCELLED, now=now
    )
    bulk.status, bulk.completed_at, bulk.updated_at = BulkStatus.CANCELLED, now, now
    log.info("bulk %s cancelled: %d done, %d skipped", bulk.action, bulk.done, bulk.skipped)
    return bulk


def _end_for_deleted_automation(session: Session, bulk: BulkOperation, now: dt.datetime) -> None:
    """The automation is gone: the runs not done yet are skipped, all at once, and it ends."""
    bulk.skipped += recovery_store.skip_pending_items(
        session, bulk.id, error=AUTOMATION_DELETED, now=now
    )
    bulk.status, bulk.completed_at, bulk.updated_at = BulkStatus.COMPLETED, now, now
    log.info("bulk %s ended: its automation was deleted", bulk.action)


def _work_item(
    session: Session,
    rt: Runtime,
    bulk: BulkOperation,
    automation: Automation,
    run_id: uuid.UUID,
    retries: int | None,
    now: dt.datetime,
) -> list[Message]:
    """One run of the operation, in a savepoint: a run that fails leaves the others alone.
    `retries` is the run's retry count when it was matched: retried since, it is skipped.
    `automation` is held by the chunk's transaction, for all its runs."""
    status, error, new_run_id = BulkItemStatus.DONE, None, None
    messages: list[Message] = []
    try:
        with session.begin_nested():
            if bulk.action == BulkAction.RETRY:
                from_cancelled = bulk.filter.get("from") == "cancelled_step"
                result = retry_locked(
                    session,
                    rt,
                    bulk.automation_id,
                    run_id,
                    from_cancelled=from_cancelled,
                    matched_retries=retries,
                    now=now,
                    held=automation,
                )
            else:
                result = replay_run(
                    session,
                    rt,
                    bulk.automation_id,
                    run_id,
                    now=now,
                    once=True,
                    matched_retries=retries,
                    held=automation,
                )
                new_run_id = result.run_id
            messages.extend(result.dispatches)
    except (RunNotRetryable, RunNotReplayable, NotFound) as reason:
        status, error = BulkItemStatus.SKIPPED, reason.message
    except AutomationsError as failure:
        status, error = BulkItemStatus.FAILED, failure.message
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        log.error("bulk %s of run %s failed", bulk.action, run_id, exc_info=exc)
        status, error = BulkItemStatus.FAILED, classify(exc).message
    recovery_store.finish_item(
        session, bulk.id, run_id, status=status, now=now, error=error, new_run_id=new_run_id
    )
    if status == BulkItemStatus.DONE:
        bulk.done += 1
    elif status == BulkItemStatus.SKIPPED:
        bulk.skipped += 1
    else:
        bulk.failed += 1
    return messages


def kick_stale(session: Session, *, idle_before: dt.datetime, now: dt.datetime) -> list[Message]:
    """Running operations that made no progress for a while lost their message: send anew."""
    stale = recovery_store.stale_bulks(session, idle_before=idle_before, now=now)
    return [BulkWork(bulk_id) for bulk_id in stale]
