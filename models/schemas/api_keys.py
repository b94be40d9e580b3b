"""Bodies of the API key endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CreateApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=50)
    permission: Literal["full_access", "sending_access"] = "full_access"
    domain_id: str | None = None
