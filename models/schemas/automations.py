"""Bodies of the automation endpoints; steps and connections are checked by engine.graph."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator


def _without_nul(value: Any) -> Any:
    """The value unchanged; PostgreSQL stores no NUL character in text or JSON, so refuse it."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    if isinstance(value, dict):
        for key, item in value.items():
            _without_nul(key)
            _without_nul(item)
    elif isinstance(value, list):
        for item in value:
            _without_nul(item)
    return value


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
