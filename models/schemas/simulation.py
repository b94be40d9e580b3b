"""Body of `POST /automations/simulate`; engine.scenario checks what lies inside each part."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
