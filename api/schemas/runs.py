"""Answers of the run endpoints: lists, a run step by step, a cancel."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from api.schemas.shapes import Answer, Id, ListOf, Timestamp
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
    steps: list[RunStep] = Field(description="In graph order")


class RunCancelled(Answer):
    object: Literal["automation_run"] = "automation_run"
    id: Id
    status: Literal["cancelled"] = "cancelled"
