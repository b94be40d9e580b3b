"""Pages of one automation: the graph, the Runs and Metrics tabs, and one run's timeline."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from engine import dashboard, reports
from engine.errors import InvalidInput
from models.enums import RunStatus
from web import graph_layout, links, metric_charts, recovery
from web.guard import Rt, User, viewing
from web.render import page, trusted_svg

router = APIRouter(include_in_schema=False)
# Recovery's routes first: its /runs/retry and /runs/replay pages are not run ids.
router.include_router(recovery.router)
SPANS = {1: "24 hours", 7: "7 days", 30: "30 days", 90: "90 days"}
DEFAULT_SPAN = 1


def _base(request: Request, automation_id: uuid.UUID) -> str:
    return f"{links.root(request.scope.get('root_path'))}/automations/{automation_id}"


@router.get("/automations/{automation_id}")
def automation_graph(
    request: Request, automation_id: str, rt: Rt, user: User, days: str | None = None
) -> Response:
    """The graph drawn by depth, each step with its counts over the chosen span."""
    key = links.parse_uuid(automation_id)
    span = int(days) if days in {str(n) for n in SPANS} else DEFAULT_SPAN
    now = rt.clock.now()
    with viewing(rt, user) as session:
        view = dashboard.automation_view(session, key)
        counts = dashboard.step_counts(
            session, key, view.graph, since=now - dt.timedelta(days=span), until=now
        )
    drawing = None
    if view.graph is not None:
        boxes = {
            k: graph_layout.Counts(c.reached, c.completed, c.failed, c.skipped)
            for k, c in counts.items()
        }
        drawing = trusted_svg(
            graph_layout.render(view.graph, boxes, title=f"Steps of {view.automation.name}")
        )
    return page(
        request,
        "automation_graph.html",
        view=view,
        tab="graph",
        base=_base(request, key),
        drawing=drawing,
        steps=list(counts.values()),
        span=span,
        spans=SPANS,
        notice=links.NOTICES.get(request.query_params.get("notice", "")),
    )


@router.get("/automations/{automation_id}/runs")
def automation_runs(
    request: Request,
    automation_id: str,
    rt: Rt,
    user: User,
    status: Annotated[list[str] | None, Query()] = None,
    after: str | None = None,
    before: str | None = None,
) -> Response:
    """Runs newest first, filtered by any statuses, a page at a time; the page refreshes itself."""
    key = links.parse_uuid(automation_id)
    wanted = sorted({s.strip() for item in status or [] for s in item.split(",") if s.strip()})
    reports.parse_run_statuses(",".join(wanted))
    cursor_after, cursor_before = links.page_cursor(after, before)
    with viewing(rt, user) as session:
        view = dashboard.automation_view(session, key)
        found = dashboard.runs(
            session, key, statuses=wanted, after=cursor_after, before=cursor_before
        )
        offer = dashboard.recovery_offer(
            session, key, failed_shown=not wanted or RunStatus.FAILED in wanted
        )
    base = _base(request, key)
    keep = [("status", name) for name in wanted]
    return page(
        request,
        "automation_runs.html",
        view=view,
        tab="runs",
        base=base,
        rows=found.items,
        statuses=[str(s) for s in RunStatus],
        wanted=wanted,
        offer=offer,
        now=rt.clock.now(),
        pager=links.pager(
            base + "/runs",
            [row.run.id for row in found.items],
            has_more=found.has_more,
            after=cursor_after,
            before=cursor_before,
            keep=keep,
        ),
    )


@router.get("/automations/{automation_id}/metrics")
def automation_metrics(
    request: Request,
    automation_id: str,
    rt: Rt,
    user: User,
    period: Annotated[str | None, Query(alias="range")] = None,
    start: str | None = None,
    end: str | None = None,
    granularity: str | None = None,
) -> Response:
    """Charts over a range: runs started and finished, durations, the funnel, emails."""
    key = links.parse_uuid(automation_id)
    now = rt.clock.now()
    chosen = metric_charts.DateRange.parse(period, start, end, granularity, now=now)
    error, charts = None, None
    with viewing(rt, user) as session:
        view = dashboard.automation_view(session, key)
        try:
            since, until = chosen.window(now)
            found = dashboard.metrics_view(
                session, key, start=since, end=until, granularity=chosen.granularity, now=now
            )
            charts = metric_charts.charts_for(found)
        except InvalidInput as problem:
            error = problem.message
    return page(
        request,
        "automation_metrics.html",
        status_code=422 if error else 200,
        view=view,
        tab="metrics",
        base=_base(request, key),
        chosen=chosen,
        presets=metric_charts.PRESETS,
        charts=charts,
        error=error,
    )


@router.get("/automations/{automation_id}/runs/{run_id}")
def run_page(request: Request, automation_id: str, run_id: str, rt: Rt, user: User) -> Response:
    """The run's steps in graph order as a timeline; each opens onto its output and error."""
    key, run_key = links.parse_uuid(automation_id), links.parse_uuid(run_id)
    with viewing(rt, user) as session:
        view = dashboard.automation_view(session, key)
        found = dashboard.run_view(session, key, run_key, graph=rt.graph)
    return page(
        request,
        "run.html",
        view=view,
        base=_base(request, key),
        run=found.detail.run,
        event=found.detail.event,
        steps=found.detail.steps,
        attempts=found.detail.attempts,
        replayed_by=found.detail.replayed_by,
        contact=found.contact,
        now=rt.clock.now(),
        notice=links.NOTICES.get(request.query_params.get("notice", "")),
    )
