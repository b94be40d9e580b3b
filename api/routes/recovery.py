"""Recovery of runs (our addition): retry from the failed step, replay anew, both in bulk."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api import serialize_automations as wire_automations
from api.deps import Authenticated, Rt, Sender
from api.wire import parse_id, wire_time
from engine import bulk, recovery, reports
from engine.db import transaction
from engine.dispatch import Message
from models.enums import BulkAction
from models.tables import BulkItem, BulkOperation, Run

router = APIRouter(tags=["runs"])


class RetryRun(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start_from: Literal["failed_step", "cancelled_step"] = Field(
        default="failed_step",
        alias="from",
        description="`cancelled_step` resumes a cancelled run from the step it was cancelled at",
    )


class BulkFilter(BaseModel):
    """Which runs of the automation to take; every field narrows the match."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    status: str | list[str] | None = Field(
        default=None, description="Run statuses, a list or comma-separated (default `failed`)"
    )
    error_code: str | None = Field(default=None, description="The failed step's error code")
    step_key: str | None = Field(default=None, description="The key of the step that failed")
    created_after: str | None = Field(default=None, description="ISO 8601; runs created after")
    created_before: str | None = Field(default=None, description="ISO 8601; runs created before")
    dry_run: StrictBool = Field(default=False, description="Only count the runs and show a sample")
    start_from: Literal["failed_step", "cancelled_step"] | None = Field(
        default=None, alias="from", description="Retry only: `cancelled_step` for cancelled runs"
    )


@router.post(
    "/automations/{automation_id}/runs/{run_id}/retry",
    summary="Retry a failed run from its failed step",
)
def retry_run(
    automation_id: str,
    run_id: str,
    rt: Rt,
    sender: Sender,
    _: Authenticated,
    body: Annotated[RetryRun | None, Body()] = None,
) -> dict[str, Any]:
    """The run goes on from the step that failed (or was cancelled): same version, event and
    contact; completed steps and sent emails are not repeated. Answers the run."""
    key, run_key = parse_id(automation_id, "automation_id"), parse_id(run_id, "run_id")
    from_cancelled = body is not None and body.start_from == "cancelled_step"
    retried = recovery.retry_run(rt, key, run_key, from_cancelled=from_cancelled)
    sender.dispatch(retried.dispatches)
    with transaction(rt.sessions) as session:
        detail = reports.get_run(session, key, run_key)
    return wire_automations.run_detail(detail)


@router.post(
    "/automations/{automation_id}/runs/{run_id}/replay",
    status_code=201,
    summary="Replay a run on the automation's current version",
)
def replay_run(
    automation_id: str, run_id: str, rt: Rt, sender: Sender, _: Authenticated
) -> dict[str, Any]:
    """A new run of the current version with the same trigger event and contact."""
    key, run_key = parse_id(automation_id, "automation_id"), parse_id(run_id, "run_id")
    with transaction(rt.sessions) as session:
        replayed = recovery.replay_run(session, rt, key, run_key, now=rt.clock.now())
    sender.dispatch(replayed.dispatches)
    return {"object": "automation_run", "id": str(replayed.run_id), "replay_of": str(run_key)}


def _bulk(
    action: BulkAction, automation_id: str, body: BulkFilter | None, rt: Rt, sender: Sender
) -> JSONResponse:
    key = parse_id(automation_id, "automation_id")
    raw = body.model_dump(by_alias=True, exclude_unset=True) if body is not None else {}
    request = bulk.parse_request(key, action, raw)
    if request.dry_run:
        with transaction(rt.sessions) as session:
            found = bulk.preview(session, request)
        answer = {
            "object": "bulk_retry",
            "id": None,
            "action": str(action),
            "dry_run": True,
            "matched": found.matched,
            "sample": [_sample(run) for run in found.sample],
        }
        return JSONResponse(answer)
    with transaction(rt.sessions) as session:
        started = bulk.start_bulk(session, request, now=rt.clock.now())
        answer = _bulk_body(started.bulk)
    messages: list[Message] = started.messages
    sender.dispatch(messages)
    return JSONResponse(answer, status_code=202)


@router.post(
    "/automations/{automation_id}/runs/retry",
    status_code=202,
    summary="Retry the runs a filter matches",
)
def retry_runs(
    automation_id: str,
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
)
def replay_runs(
    automation_id: str,
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
def get_bulk(automation_id: str, bulk_id: str, rt: Rt, _: Authenticated) -> dict[str, Any]:
    """How many runs it matched and how many are done, skipped or failed so far."""
    key, bulk_key = parse_id(automation_id, "automation_id"), parse_id(bulk_id, "bulk_id")
    with transaction(rt.sessions) as session:
        operation, items = bulk.get_bulk(session, key, bulk_key)
        answer = _bulk_body(operation)
        answer["items"] = [_item(item) for item in items]
    return answer


def _bulk_body(operation: BulkOperation) -> dict[str, Any]:
    return {
        "object": "bulk_retry",
        "id": str(operation.id),
        "action": operation.action,
        "dry_run": False,
        "status": operation.status,
        "filter": operation.filter,
        "matched": operation.matched,
        "done": operation.done,
        "skipped": operation.skipped,
        "failed": operation.failed,
        "created_at": wire_time(operation.created_at),
        "completed_at": wire_time(operation.completed_at),
    }


def _item(item: BulkItem) -> dict[str, Any]:
    return {
        "run_id": str(item.run_id),
        "status": item.status,
        "new_run_id": str(item.new_run_id) if item.new_run_id else None,
        "error": item.error,
        "completed_at": wire_time(item.completed_at),
    }


def _sample(run: Run) -> dict[str, Any]:
    return wire_automations.run_item(run)
