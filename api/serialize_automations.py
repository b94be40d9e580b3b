"""Automations, runs and metrics as Resend's wire objects."""

from __future__ import annotations

from typing import Any

from api.schemas.automations import Automation, AutomationItem, Connection, Step
from api.schemas.metrics import (
    AutomationMetrics,
    Durations,
    EmailCounts,
    RunCounts,
    SeriesBucket,
    StepCounts,
)
from api.schemas.runs import Run, RunEvent, RunStep, StepError
from api.wire import wire_time
from engine.metrics import Metrics
from engine.reports import AutomationDetail, RunDetail
from engine.store.reports import RunSummary
from models.enums import AutomationStatus, ConnectionType, RunStatus, StepStatus
from models.tables import Automation as AutomationRow
from models.tables import Event
from models.tables import RunStep as RunStepRow


def automation_item(automation: AutomationRow) -> AutomationItem:
    return AutomationItem(
        id=str(automation.id),
        name=automation.name,
        status=AutomationStatus(automation.status),
        created_at=wire_time(automation.created_at),
        updated_at=wire_time(automation.updated_at),
    )


def automation_detail(detail: AutomationDetail) -> Automation:
    graph = detail.graph
    item = automation_item(detail.automation)
    return Automation(
        **dict(item),
        steps=[Step(key=s["key"], type=s["type"], config=s["config"]) for s in graph["steps"]],
        connections=[
            Connection(source=c["from"], to=c["to"], type=ConnectionType(c.get("type", "default")))
            for c in graph["connections"]
        ],
    )


def run_item(run: RunSummary) -> dict[str, Any]:
    """A RunItem as a plain dict: a runs list answers up to thousands without a model each."""
    return {
        "id": str(run.id),
        "status": run.status,
        "started_at": wire_time(run.started_at),
        "completed_at": wire_time(run.completed_at),
        "created_at": wire_time(run.created_at),
    }


def _error(error: dict[str, Any] | None) -> StepError | None:
    if not error:
        return None
    return StepError(message=error.get("message"), code=error.get("code"))


def run_step(step: RunStepRow) -> RunStep:
    return RunStep(
        key=step.step_key,
        type=step.step_type,
        status=StepStatus(step.status),
        started_at=wire_time(step.started_at),
        completed_at=wire_time(step.completed_at),
        output=step.output,
        error=_error(step.error),
        created_at=wire_time(step.created_at),
    )


def _event(event: Event | None) -> RunEvent | None:
    if event is None:
        return None
    return RunEvent(id=str(event.id), name=event.name, payload=event.payload)


def run_detail(detail: RunDetail) -> Run:
    """Resend's AutomationRun, plus our automation_id, contact_id and trigger event."""
    run = detail.run
    return Run(
        id=str(run.id),
        status=RunStatus(run.status),
        started_at=wire_time(run.started_at),
        completed_at=wire_time(run.completed_at),
        created_at=wire_time(run.created_at),
        automation_id=str(run.automation_id),
        contact_id=str(run.contact_id) if run.contact_id else None,
        event=_event(detail.event),
        steps=[run_step(step) for step in detail.steps],
    )


def metrics(result: Metrics) -> AutomationMetrics:
    tally = result.runs
    return AutomationMetrics(
        automation_id=str(result.automation_id),
        start=wire_time(result.window.start),
        end=wire_time(result.window.end),
        granularity=result.window.granularity,
        runs=RunCounts(total=sum(tally.by_status.values()), by_status=dict(tally.by_status)),
        steps={
            step.key: StepCounts(
                type=step.type,
                reached=step.reached,
                completed=step.completed,
                failed=step.failed,
                skipped=step.skipped,
            )
            for step in result.steps
        },
        duration_seconds=Durations(finished_runs=tally.finished_runs, **tally.percentiles),
        emails=EmailCounts(
            sent=result.emails_sent, skipped_unsubscribed=result.emails_skipped_unsubscribed
        ),
        series=[
            SeriesBucket(
                start=wire_time(bucket.start),
                runs_started=bucket.runs_started,
                by_status=dict(bucket.by_status),
            )
            for bucket in tally.series
        ],
    )
