"""Bodies and answers of the automation endpoints; steps and connections are checked by
engine.graph."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas.shapes import Answer, Id, ListOf, Timestamp
from models.enums import AutomationStatus, ConnectionType


def _without_nul(value: Any) -> Any:
    """The value unchanged; PostgreSQL stores no NUL character in text or JSON, nor a lone
    surrogate, which has no UTF-8, so refuse them."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    if isinstance(value, str) and not _encodable(value):
        raise ValueError("must not contain a lone surrogate (\\ud800-\\udfff)")
    if isinstance(value, dict):
        for key, item in value.items():
            _without_nul(key)
            _without_nul(item)
    elif isinstance(value, list):
        for item in value:
            _without_nul(item)
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class _GraphBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return _without_nul(value)


class CreateAutomation(_GraphBody):
    name: str
    status: Literal["enabled", "disabled"] = "disabled"
    steps: list[dict[str, Any]]
    connections: list[dict[str, Any]]


class UpdateAutomation(_GraphBody):
    """Every field optional; the engine asks for at least one, and steps with connections."""

    name: str | None = None
    status: Literal["enabled", "disabled"] | None = None
    steps: list[dict[str, Any]] | None = None
    connections: list[dict[str, Any]] | None = None


class StopAutomation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cancel_runs: bool = False


class AutomationRef(Answer):
    """The answer to a create, an update or a duplicate."""

    object: Literal["automation"] = "automation"
    id: Id


class AutomationDeleted(AutomationRef):
    deleted: Literal[True] = True
    runs_cancelling: bool = Field(
        default=False,
        description="Our addition: the workers are still cancelling its runs in flight (a stop "
        "with `cancel_runs`, or a deletion, that had more runs than its request's time)",
    )


class AutomationStopped(AutomationRef):
    status: Literal["disabled"] = "disabled"
    runs_cancelling: bool = Field(
        default=False,
        description="Our addition: the workers are still cancelling its runs in flight (a stop "
        "with `cancel_runs`, or a deletion, that had more runs than its request's time)",
    )


class AutomationItem(Answer):
    """An automation as a list shows it."""

    id: Id
    name: str
    status: AutomationStatus
    created_at: Timestamp
    updated_at: Timestamp


class AutomationList(ListOf[AutomationItem]):
    pass


class Step(Answer):
    key: str
    type: str = Field(description="The step type, e.g. `trigger`, `send_email`, `delay`")
    config: dict[str, Any]


class Connection(Answer):
    source: str = Field(serialization_alias="from")
    to: str
    type: ConnectionType


class _AutomationObject(Answer):
    # A base listed last puts its field first: `object` leads the full object, as Resend writes it.
    object: Literal["automation"] = "automation"


class Automation(AutomationItem, _AutomationObject):
    """An automation with the steps and connections of its current version."""

    steps: list[Step]
    connections: list[Connection]
    runs_cancelling: bool = Field(
        default=False,
        description="Our addition: the workers are still cancelling its runs in flight (a stop "
        "with `cancel_runs`, or a deletion, that had more runs than its request's time)",
    )
