"""Body of `POST /automations/simulate`; engine.scenario checks what lies inside each part."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.shapes import Answer
from models.enums import StepStatus


class SimulateAutomation(BaseModel):
    """An automation (or the id of a stored one), a contact, the trigger event, later events."""

    model_config = ConfigDict(extra="forbid")

    automation: dict[str, Any] | None = Field(
        default=None, description="`{steps, connections}`, as `POST /automations` takes them"
    )
    automation_id: str | None = Field(
        default=None, description="Simulate the current version of this stored automation"
    )
    contact: dict[str, Any] = Field(
        description="`{email, first_name, last_name, unsubscribed, properties}`, or `{id}` for a "
        "stored contact (the other fields then override its own)"
    )
    event: dict[str, Any] | None = Field(
        default=None, description="The trigger event: `{name?, payload?}`"
    )
    events: list[Any] | None = Field(
        default=None,
        description='Later events: `[{name, after: "2 days", payload?}]`, `after` counted from '
        "the trigger",
    )
    until: str | None = Field(
        default=None, description='Stop after this much virtual time (e.g. "10 days")'
    )


class SimulatedStep(Answer):
    key: str
    type: str
    status: StepStatus
    skip_reason: str | None
    at: str = Field(description='When on the run\'s virtual clock, e.g. "+1 day 2 hours"')
    output: dict[str, Any] | None
    error: dict[str, Any] | None


class SimulatedEmail(Answer):
    step_key: str
    at: str
    to: str
    sender: str = Field(serialization_alias="from")
    subject: str
    html: str | None
    text: str | None
    headers: dict[str, str]


class SimulatedEvent(Answer):
    name: str
    at: str
    resumed_step: str | None = Field(description="The wait_for_event step it resumed, if any")


class Simulation(Answer):
    """A run played on virtual time: its path, statuses and the emails it would send."""

    object: Literal["simulation"] = "simulation"
    status: Literal["completed", "failed", "skipped", "waiting", "cancelled"]
    duration: str = Field(description='Virtual time from the trigger to the end, "3 days 2 hours"')
    steps: list[SimulatedStep]
    emails: list[SimulatedEmail]
    events: list[SimulatedEvent]
