"""Automations, runs and metrics as Resend's wire dicts."""

from __future__ import annotations

from typing import Any

from api.wire import wire_time
from engine.metrics import Metrics, StepMetrics
from engine.reports import Attempt, AutomationDetail, RunDetail
from engine.store.reports import RunSummary
from models.tables import Automation, Event, Run, RunStep


def automation_ref(automation_id: object) -> dict[str, Any]:
    return {"object": "automation", "id": str(automation_id)}


def automation_item(automation: Automation) -> dict[str, Any]:
    return {
        "id": str(automation.id),
        "name": automation.name,
        "status": automation.status,
        "created_at": wire_time(automation.created_at),
        "updated_at": wire_time(automation.updated_at),
    }


def automation_detail(detail: AutomationDetail) -> dict[str, Any]:
    graph = detail.graph
    return {
        "object": "automation",
        **automation_item(detail.automation),
        "steps": [
            {"key": s["key"], "type": s["type"], "config": s["config"]} for s in graph["steps"]
        ],
        "connections": [
            {"from": c["from"], "to": c["to"], "type": c.get("type", "default")}
            for c in graph["connections"]
        ],
    }


def run_item(run: Run | RunSummary) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "status": run.status,
        "started_at": wire_time(run.started_at),
        "completed_at": wire_time(run.completed_at),
        "created_at": wire_time(run.created_at),
    }


def _error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if not error:
        return None
    return {"message": error.get("message"), "code": error.get("code")}


def run_step(step: RunStep, attempts: list[Attempt] | None = None) -> dict[str, Any]:
    """Resend's step of a run, plus our `attempts`: every try of the step, the last one current."""
    return {
        "key": step.step_key,
        "type": step.step_type,
        "status": step.status,
        "started_at": wire_time(step.started_at),
        "completed_at": wire_time(step.completed_at),
        "output": step.output,
        "error": _error(step.error),
        "created_at": wire_time(step.created_at),
        "attempts": [_attempt(attempt) for attempt in attempts or []],
    }


def _attempt(attempt: Attempt) -> dict[str, Any]:
    return {
        "attempt": attempt.number,
        "status": attempt.status,
        "started_at": wire_time(attempt.started_at),
        "completed_at": wire_time(attempt.completed_at),
        "error": _error(attempt.error),
    }


def _event(event: Event | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {"id": str(event.id), "name": event.name, "payload": event.payload}


def run_detail(detail: RunDetail) -> dict[str, Any]:
    """Resend's AutomationRun, plus our automation_id, contact_id, trigger event, and how the
    run was recovered: retries, the run it replays and the runs that replay it."""
    run = detail.run
    return {
        "object": "automation_run",
        **run_item(run),
        "automation_id": str(run.automation_id),
        "contact_id": str(run.contact_id) if run.contact_id else None,
        "event": _event(detail.event),
        "retries": run.retries,
        "last_retried_at": wire_time(run.last_retried_at),
        "replay_of": str(run.replay_of) if run.replay_of else None,
        "replayed_by": [str(run_id) for run_id in detail.replayed_by],
        "steps": [run_step(step, detail.attempts.get(step.step_key)) for step in detail.steps],
    }


def _step_counts(step: StepMetrics) -> dict[str, Any]:
    return {
        "type": step.type,
        "reached": step.reached,
        "completed": step.completed,
        "failed": step.failed,
        "skipped": step.skipped,
    }


def metrics(result: Metrics) -> dict[str, Any]:
    tally = result.runs
    return {
        "object": "automation_metrics",
        "automation_id": str(result.automation_id),
        "start": wire_time(result.window.start),
        "end": wire_time(result.window.end),
        "granularity": str(result.window.granularity),
        "runs": {"total": sum(tally.by_status.values()), "by_status": dict(tally.by_status)},
        "steps": {step.key: _step_counts(step) for step in result.steps},
        "duration_seconds": {"finished_runs": tally.finished_runs, **tally.percentiles},
        "emails": {
            "sent": result.emails_sent,
            "skipped_unsubscribed": result.emails_skipped_unsubscribed,
        },
        "recovery": {
            "retried_runs": result.recovery.retried_runs,
            "retries": result.recovery.retries,
            "replays": result.recovery.replays,
        },
        "series": [
            {
                "start": wire_time(bucket.start),
                "runs_started": bucket.runs_started,
                "by_status": dict(bucket.by_status),
            }
            for bucket in tally.series
        ],
    }
