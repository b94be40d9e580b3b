"""Bodies of the template, domain and event definition endpoints, in Resend's field names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Region = Literal["us-east-1", "eu-west-1", "sa-east-1", "ap-northeast-1"]
Tls = Literal["opportunistic", "enforced"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Variable(_Body):
    key: str = Field(min_length=1, max_length=50)
    type: Literal["string", "number"]
    # Checked against `type` by the engine, so that the message names the variable.
    fallback_value: Any = None


class _TemplateFields(_Body):
    alias: str | None = Field(default=None, min_length=1, max_length=255)
    subject: str | None = Field(default=None, max_length=998)
    sender: str | None = Field(default=None, alias="from", min_length=3, max_length=320)
    reply_to: str | list[str] | None = Field(default=None, max_length=50)
    text_body: str | None = Field(default=None, alias="text", max_length=1_000_000)
    variables: list[Variable] | None = Field(default=None, max_length=50)


class CreateTemplate(_TemplateFields):
    name: str = Field(min_length=1, max_length=255)
    html: str = Field(min_length=1, max_length=1_000_000)


class UpdateTemplate(_TemplateFields):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    html: str | None = Field(default=None, min_length=1, max_length=1_000_000)


class CreateDomain(_Body):
    name: str = Field(min_length=1, max_length=253)
    region: Region = "us-east-1"
    custom_return_path: str | None = Field(default=None, min_length=1, max_length=63)
    open_tracking: bool = False
    click_tracking: bool = False
    tls: Tls = "opportunistic"
    tracking_subdomain: str | None = Field(default=None, min_length=1, max_length=63)


class UpdateDomain(_Body):
    # The SDK sends the id it addressed the domain by; the path decides.
    id: str | None = Field(default=None, max_length=36)
    open_tracking: bool | None = None
    click_tracking: bool | None = None
    tls: Tls | None = None
    tracking_subdomain: str | None = Field(default=None, min_length=1, max_length=63)


class CreateEventDefinition(_Body):
    name: str = Field(min_length=1, max_length=255)
    # `schema` would shadow a BaseModel attribute; the wire name is kept by the alias.
    event_schema: dict[str, Any] | None = Field(default=None, alias="schema")


class UpdateEventDefinition(_Body):
    event_schema: dict[str, Any] | None = Field(alias="schema")
