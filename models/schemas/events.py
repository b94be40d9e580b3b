"""Bodies of the event endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SendEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str = Field(min_length=1, max_length=255)
    contact_id: str | None = None
    email: str | None = Field(default=None, max_length=320)
    payload: dict[str, Any] | None = None
