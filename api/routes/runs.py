"""Runs of an automation: list, retrieve step by step, cancel; and the automation's metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from api import serialize_automations
from api.deps import Authenticated, Rt
from api.schemas.metrics import AutomationMetrics
from api.schemas.runs import Run, RunCancelled, RunList
from api.wire import (
    RunsPageQuery,
    StoredJson,
    UuidPath,
    list_body,
    parse_id,
    stored_json,
    written_list,
)
from engine import lifecycle, metrics, reports
from engine.db import reads, transaction
from engine.store.reports import JsonPage
from models.enums import RunStatus

router = APIRouter(tags=["runs"])

# Documented as engine/reports.py and engine/metrics.py read them; checked there, after the key.
_STATUS = f"(?:{'|'.join(RunStatus)})"
StatusQuery = Annotated[
    str | None,
    Query(
        description="Run statuses separated by commas, such as `failed,skipped`.",
        json_schema_extra={"pattern": f"^{_STATUS}(?:,{_STATUS})*$"},
    ),
]
TimeQuery = Annotated[str | None, Query(json_schema_extra={"format": "date-time"})]
GranularityQuery = Annotated[
    str | None, Query(json_schema_extra={"enum": [str(g) for g in metrics.Granularity]})
]


@router.get(
    "/automations/{automation_id}/runs",
    summary="List an automation's runs",
    # Documented only: the answer is built as plain JSON types, see below.
    responses={200: {"model": RunList, "description": "Newest first"}},
)
def list_runs(
    automation_id: UuidPath,
    rt: Rt,
    _: Authenticated,
    cursor: RunsPageQuery,
    status: StatusQuery = None,
) -> Response:
    """Newest first, filtered by `status=running,failed`; without `limit`, every run (capped)."""
    key = parse_id(automation_id, "automation_id")
    with reads(rt.read_sessions) as session:
        page = reports.list_runs_written(
            session,
            key,
            status=status,
            limit=cursor.limit,
            after=cursor.after,
            before=cursor.before,
        )
    if isinstance(page, JsonPage):
        # PostgreSQL wrote the items: no Python object per run, the bytes go as they come.
        return written_list(page.items, page.has_more)
    items = [serialize_automations.run_item(run) for run in page.items]
    # Already JSON types: answered as is, without FastAPI's encoder walking a thousand items.
    return JSONResponse(list_body(items, page.has_more))


@router.get(
    "/automations/{automation_id}/runs/{run_id}", summary="Retrieve a run", response_model=Run
)
def get_run(automation_id: UuidPath, run_id: UuidPath, rt: Rt, _: Authenticated) -> StoredJson:
    """The run with its steps in graph order, each with output and error."""
    key, run_key = parse_id(automation_id, "automation_id"), parse_id(run_id, "run_id")
    with reads(rt.read_sessions) as session:
        detail = reports.get_run(session, key, run_key, graph=rt.graph)
    return stored_json(serialize_automations.run_detail(detail))


@router.post("/automations/{automation_id}/runs/{run_id}/cancel", summary="Cancel a run")
def cancel_run(automation_id: UuidPath, run_id: UuidPath, rt: Rt, _: Authenticated) -> RunCancelled:
    """Stop the run before its next step; cancelling a cancelled run answers the same."""
    key, run_key = parse_id(automation_id, "automation_id"), parse_id(run_id, "run_id")
    with transaction(rt.sessions) as session:
        lifecycle.cancel_run(session, key, run_key, now=rt.clock.now())
    return RunCancelled(id=str(run_key))


@router.get("/automations/{automation_id}/metrics", summary="An automation's metrics")
def automation_metrics(
    automation_id: UuidPath,
    rt: Rt,
    _: Authenticated,
    start: TimeQuery = None,
    end: TimeQuery = None,
    granularity: GranularityQuery = None,
) -> AutomationMetrics:
    """Runs by status, per-step counts, durations, emails and a series over [start, end)."""
    key = parse_id(automation_id, "automation_id")
    with reads(rt.read_sessions) as session:
        result = metrics.automation_metrics(
            session, key, start=start, end=end, granularity=granularity, now=rt.clock.now()
        )
    return serialize_automations.metrics(result)
