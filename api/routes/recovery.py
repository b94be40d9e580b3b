"""Recovery of runs (our addition): retry from the failed step, replay anew, both in bulk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api import serialize_automations
from api.deps import Authenticated, Rt, Sender
from api.schemas.runs import (
    BulkFilter,
    BulkItem,
    BulkRetry,
    BulkRetryPreview,
    BulkRetryProgress,
    RetryRun,
    Run,
    RunItem,
    RunReplayed,
)
from api.wire import StoredJson, UuidPath, parse_id, stored_json, wire_time
from engine import bulk, recovery, reports
from engine.db import reads, transaction
from engine.dispatch import Message, commit_then_dispatch
from models.enums import BulkAction, RunStatus
from models.tables import BulkItem as BulkItemRow
from models.tables import BulkOperation
from models.tables import Run as RunRow

router = APIRouter(tags=["runs"])
T = TypeVar("T", bound=BulkRetry)


@router.post(
    "/automations/{automation_id}/runs/{run_id}/retry",
    summary="Retry a failed run from its failed step",
    response_model=Run,
)
def retry_run(
    automation_id: UuidPath,
    run_id: UuidPath,
    rt: Rt,
    sender: Sender,
    _: Authenticated,
    body: Annotated[RetryRun | None, Body()] = None,
) -> StoredJson:
    """The run goes on from the step that failed (or was cancelled): same version, event and
    contact; completed steps and sent emails are not repeated. Answers the run as the retry
    left it: read before its steps are sent, a worker could have ended it already."""
    key, run_key = parse_id(automation_id, "automation_id"), parse_id(run_id, "run_id")
    from_cancelled = body is not None and body.start_from == "cancelled_step"
    retried = recovery.retry_run(rt, key, run_key, from_cancelled=from_cancelled)
    try:
        with transaction(rt.sessions) as session:
            detail = reports.get_run(session, key, run_key, graph=rt.graph)
    finally:  # committed: its steps go to the workers whatever the read does
        sender.dispatch(retried.dispatches)
    return stored_json(serialize_automations.run_detail(detail))


@router.post(
    "/automations/{automation_id}/runs/{run_id}/replay",
    status_code=201,
    summary="Replay a run on the automation's current version",
)
def replay_run(
    automation_id: UuidPath, run_id: UuidPath, rt: Rt, sender: Sender, _: Authenticated
) -> RunReplayed:
    """A new run of the current version with the same trigger event and contact."""
    key, run_key = parse_id(automation_id, "automation_id"), parse_id(run_id, "run_id")
    replayed = commit_then_dispatch(
        transaction(rt.sessions),
        sender,
        lambda s: recovery.replay_run(s, rt, key, run_key, now=rt.clock.now()),
    )
    return RunReplayed(id=str(replayed.run_id), replay_of=str(run_key))


@dataclass(frozen=True)
class _Started:
    answer: BulkRetry
    dispatches: list[Message]


_BULK_ANSWERS: dict[int | str, dict[str, object]] = {
    200: {"model": BulkRetryPreview, "description": "A dry run: the count and a sample"},
    202: {"model": BulkRetry, "description": "Started (or the same one, still running)"},
}


def _bulk(
    action: BulkAction, automation_id: str, body: BulkFilter | None, rt: Rt, sender: Sender
) -> JSONResponse:
    key = parse_id(automation_id, "automation_id")
    raw = body.model_dump(by_alias=True, exclude_unset=True) if body is not None else {}
    request = bulk.parse_request(key, action, raw)
    if request.dry_run:
        with transaction(rt.sessions) as session:
            found = bulk.preview(session, request)
        preview = BulkRetryPreview.model_validate(
            {"action": action, "matched": found.matched, "sample": [_item(r) for r in found.sample]}
        )
        return JSONResponse(preview.model_dump(mode="json"))

    def start(session: Session) -> _Started:
        started = bulk.start_bulk(session, request, now=rt.clock.now())
        # Answered from the row as the transaction sees it, before the commit.
        return _Started(_bulk_answer(started.bulk, BulkRetry), started.dispatches)

    answer = commit_then_dispatch(transaction(rt.sessions), sender, start).answer
    return JSONResponse(answer.model_dump(mode="json"), status_code=202)


@router.post(
    "/automations/{automation_id}/runs/retry",
    status_code=202,
    summary="Retry the runs a filter matches",
    responses=_BULK_ANSWERS,
    response_model=None,
)
def retry_runs(
    automation_id: UuidPath,
    rt: Rt,
    sender: Sender,
    _: Authenticated,
    body: Annotated[BulkFilter | None, Body()] = None,
) -> JSONResponse:
    """Failed runs by default; `dry_run` only counts them. Workers retry them in chunks."""
    return _bulk(BulkAction.RETRY, automation_id, body, rt, sender)


@router.post(
    "/automations/{automation_id}/runs/replay",
    status_code=202,
    summary="Replay the runs a filter matches",
    responses=_BULK_ANSWERS,
    response_model=None,
)
def replay_runs(
    automation_id: UuidPath,
    rt: Rt,
    sender: Sender,
    _: Authenticated,
    body: Annotated[BulkFilter | None, Body()] = None,
) -> JSONResponse:
    """Failed runs not replayed yet by default; `dry_run` only counts them."""
    return _bulk(BulkAction.REPLAY, automation_id, body, rt, sender)


@router.get(
    "/automations/{automation_id}/runs/retries/{bulk_id}",
    summary="Follow a bulk retry or replay",
)
def get_bulk(
    automation_id: UuidPath, bulk_id: UuidPath, rt: Rt, _: Authenticated
) -> BulkRetryProgress:
    """How many runs it matched and how many are done, skipped or failed so far."""
    key, bulk_key = parse_id(automation_id, "automation_id"), parse_id(bulk_id, "bulk_id")
    with reads(rt.read_sessions) as session:
        operation, items = bulk.get_bulk(session, key, bulk_key)
        answer = _bulk_answer(operation, BulkRetryProgress, items=[_bulk_item(i) for i in items])
    return answer


@router.post(
    "/automations/{automation_id}/runs/retries/{bulk_id}/cancel",
    summary="Cancel a bulk retry or replay",
)
def cancel_bulk(automation_id: UuidPath, bulk_id: UuidPath, rt: Rt, _: Authenticated) -> BulkRetry:
    """The runs it has not reached are left as they were; those it did stay retried or
    replayed."""
    key, bulk_key = parse_id(automation_id, "automation_id"), parse_id(bulk_id, "bulk_id")
    with transaction(rt.sessions) as session:
        operation = bulk.cancel_bulk(session, key, bulk_key, now=rt.clock.now())
        return _bulk_answer(operation, BulkRetry)


def _bulk_answer(operation: BulkOperation, kind: type[T], **extra: object) -> T:
    return kind.model_validate(
        {
            "id": str(operation.id),
            "action": operation.action,
            "status": operation.status,
            "filter": operation.filter,
            "matched": operation.matched,
            "done": operation.done,
            "skipped": operation.skipped,
            "failed": operation.failed,
            "created_at": wire_time(operation.created_at),
            "completed_at": wire_time(operation.completed_at),
            **extra,
        }
    )


def _bulk_item(item: BulkItemRow) -> BulkItem:
    return BulkItem(
        run_id=str(item.run_id),
        status=item.status,  # type: ignore[arg-type]
        new_run_id=str(item.new_run_id) if item.new_run_id else None,
        error=item.error,
        completed_at=wire_time(item.completed_at),
    )


def _item(run: RunRow) -> RunItem:
    return RunItem(
        id=str(run.id),
        status=RunStatus(run.status),
        started_at=wire_time(run.started_at),
        completed_at=wire_time(run.completed_at),
        created_at=wire_time(run.created_at),
    )
