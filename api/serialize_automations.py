"""Automations, runs and metrics as Resend's JSON objects."""

from __future__ import annotations

from typing import Any

from api.schemas.automations import Automation, AutomationItem, Connection, Step
from api.schemas.metrics import (
    AutomationMetrics,
    Durations,
    EmailCounts,
    RecoveryCounts,
    RunCounts,
    SeriesBucket,
    StepCounts,
)
from api.schemas.runs import Run, RunEvent, RunStep, StepAttempt, StepError
from api.wire import wire_time
from engine.metrics import Metrics
from engine.reports import Attempt, AutomationDetail, RunDetail
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
        runs_cancelling=detail.automation.runs_cancelling_at is not None,
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


def run_step(step: RunStepRow, attempts: list[Attempt] | None = None) -> RunStep:
    """Resend's step of a run, plus our `attempts`: every try of the step, the last one current."""
    return RunStep(
        key=step.step_key,
        type=step.step_type,
        status=StepStatus(step.status),
        started_at=wire_time(step.started_at),
        completed_at=wire_time(step.completed_at),
        output=step.output,
        error=_error(step.error),
        created_at=wire_time(step.created_at),
        attempts=[_attempt(attempt) for attempt in attempts or []],
    )


def _attempt(attempt: Attempt) -> StepAttempt:
    return StepAttempt(
        attempt=attempt.number,
        status=StepStatus(attempt.status),
        started_at=wire_time(attempt.started_at),
        completed_at=wire_time(attempt.completed_at),
        error=_error(attempt.error),
    )


def _event(event: Event | None) -> RunEvent | None:
    if event is None:
        return None
    return RunEvent(id=str(event.id), name=event.name, payload=event.payload)


def run_detail(detail: RunDetail) -> Run:
    """Resend's AutomationRun, plus our automation_id, contact_id, trigger event, and how the
    run was recovered: retries, the run it replays and the runs that replay it."""
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
        retries=run.retries,
        last_retried_at=wire_time(run.last_retried_at),
        replay_of=str(run.replay_of) if run.replay_of else None,
        replayed_by=[str(run_id) for run_id in detail.replayed_by],
        steps=[run_step(step, detail.attempts.get(step.step_key)) for step in detail.steps],
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
        recovery=RecoveryCounts(
            retried_runs=result.recovery.retried_runs,
            retries=result.recovery.retries,
            replays=result.recovery.replays,
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
