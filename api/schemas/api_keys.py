"""Bodies and answers of the API key endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.shapes import Answer, Body, Id, ListOf, Timestamp


class CreateApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=50)
    permission: Literal["full_access", "sending_access"] = "full_access"
    domain_id: str | None = Field(
        default=None,
        description="Resend's restriction of a sending key to one domain: not supported, and"
        " refused with 422 rather than ignored (keys send events; the automation names the sender)",
    )


class UpdateApiKey(Body):
    name: str = Field(min_length=1, max_length=50)


class ApiKeyCreated(Answer):
    id: Id
    token: str = Field(description="The secret: shown this once, stored only as a hash")


class ApiKeyItem(Answer):
    id: Id
    name: str
    created_at: Timestamp
    last_used_at: Timestamp | None = Field(
        description="When the key last authenticated a request, to the minute; null if never"
    )


class ApiKeyList(ListOf[ApiKeyItem]):
    pass


class ApiKeyRef(Answer):
    """The answer to a rename."""

    object: Literal["api_key"] = "api_key"
    id: Id


class ApiKeyDeleted(ApiKeyRef):
    deleted: Literal[True] = True
