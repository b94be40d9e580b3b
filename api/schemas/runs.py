"""Answers of the run endpoints: lists, a run step by step, a cancel."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from api.schemas.shapes import Answer, Body, Id, ListOf, Timestamp
from models.enums import RunStatus, StepStatus


class RunItem(Answer):
    """A run as a list shows it."""

    id: Id
    status: RunStatus
    started_at: Timestamp
    completed_at: Timestamp | None
    created_at: Timestamp


class RunList(ListOf[RunItem]):
    pass


class StepError(Answer):
    message: str | None
    code: str | None = Field(description="A stable code, e.g. `template_not_published`")


class StepAttempt(Answer):
    """One try of a step (our addition); the last one is the step's current try."""

    attempt: int = Field(description="1 for the step's first try")
    status: StepStatus
    started_at: Timestamp | None
    completed_at: Timestamp | None
    error: StepError | None


class RunStep(Answer):
    key: str
    type: str
    status: StepStatus
    started_at: Timestamp | None
    completed_at: Timestamp | None
    output: dict[str, Any] | None = Field(
        description="What the step did; a `send_email` step: `{to, email_id, template}`"
    )
    error: StepError | None
    created_at: Timestamp
    attempts: list[StepAttempt] = Field(description="Every try of the step, oldest first")


class RunEvent(Answer):
    """The event that started the run."""

    id: Id
    name: str
    payload: dict[str, Any]


class _RunObject(Answer):
    # A base listed last puts its field first: `object` leads, as Resend writes it.
    object: Literal["automation_run"] = "automation_run"


class Run(RunItem, _RunObject):
    """Resend's AutomationRun, plus the automation, the contact and the trigger event."""

    automation_id: Id
    contact_id: Id | None
    event: RunEvent | None
    retries: int = Field(description="Times an operator retried the run")
    last_retried_at: Timestamp | None
    replay_of: Id | None = Field(description="The run this one replays")
    replayed_by: list[Id] = Field(description="The runs that replay this one")
    steps: list[RunStep] = Field(description="In graph order")


class RunCancelled(Answer):
    object: Literal["automation_run"] = "automation_run"
    id: Id
    status: Literal["cancelled"] = "cancelled"


class RunReplayed(Answer):
    """A replay: the new run, and the run it replays."""

    object: Literal["automation_run"] = "automation_run"
    id: Id
    replay_of: Id


class BulkItem(Answer):
    run_id: Id
    status: Literal["pending", "done", "skipped", "failed"]
    new_run_id: Id | None = Field(description="The run a replay created")
    error: str | None = Field(description="Why the run was skipped or failed")
    completed_at: Timestamp | None


class BulkRetry(Answer):
    """A bulk retry or replay: how many runs it matched and how far it is."""

    object: Literal["bulk_retry"] = "bulk_retry"
    id: Id
    action: Literal["retry", "replay"]
    dry_run: Literal[False] = False
    status: Literal["running", "completed", "cancelled"]
    filter: dict[str, Any]
    matched: int
    done: int
    skipped: int
    failed: int
    created_at: Timestamp
    completed_at: Timestamp | None


class BulkRetryProgress(BulkRetry):
    items: list[BulkItem] = Field(description="Skipped and failed runs first, then the others")


class BulkRetryPreview(Answer):
    """A dry run: how many runs would be taken, and the newest of them."""

    object: Literal["bulk_retry"] = "bulk_retry"
    id: None = None
    action: Literal["retry", "replay"]
    dry_run: Literal[True] = True
    matched: int
    sample: list[RunItem]


class RetryRun(Body):
    model_config = {**Body.model_config, "populate_by_name": True}

    start_from: Literal["failed_step", "cancelled_step"] = Field(
        default="failed_step",
        alias="from",
        description="`cancelled_step` resumes a cancelled run from the step it was cancelled at",
    )


class BulkFilter(Body):
    """Which runs of the automation to take; every field narrows the match."""

    model_config = {**Body.model_config, "populate_by_name": True}

    status: str | list[str] | None = Field(
        default=None, description="Run statuses, a list or comma-separated (default `failed`)"
    )
    error_code: str | None = Field(default=None, description="The failed step's error code")
    step_key: str | None = Field(default=None, description="The key of the step that failed")
    created_after: str | None = Field(default=None, description="ISO 8601; runs created after")
    created_before: str | None = Field(default=None, description="ISO 8601; runs created before")
    dry_run: bool = Field(default=False, description="Only count the runs and show a sample")
    start_from: Literal["failed_step", "cancelled_step"] | None = Field(
        default=None, alias="from", description="Retry only: `cancelled_step` for cancelled runs"
    )
