"""Bodies and answers of the template endpoints, in Resend's field names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from api.schemas.shapes import Answer, Body, Id, ListOf, Timestamp
from models.enums import TemplateStatus


class Variable(Body):
    key: str = Field(min_length=1, max_length=50)
    type: Literal["string", "number"]
    # Checked against `type` by the engine, so that the message names the variable.
    fallback_value: Any = None


class _TemplateFields(Body):
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


class TemplateRef(Answer):
    """The answer to a create, an update, a publish or a duplicate."""

    object: Literal["template"] = "template"
    id: Id


class TemplateDeleted(TemplateRef):
    deleted: Literal[True] = True


class TemplateVariable(Answer):
    key: str
    type: Literal["string", "number"]
    fallback_value: str | int | float | None


class Template(Answer):
    object: Literal["template"] = "template"
    id: Id
    name: str
    alias: str | None
    status: TemplateStatus
    sender: str | None = Field(serialization_alias="from")
    subject: str | None
    reply_to: list[str] | None
    html: str | None
    text_body: str | None = Field(serialization_alias="text")
    variables: list[TemplateVariable]
    created_at: Timestamp
    updated_at: Timestamp
    published_at: Timestamp | None
    # The version send_email steps render: fixed by each publish (None before the first one).
    current_version_id: Id | None
    # The draft (the fields above) has changes that sends do not use until the next publish.
    has_unpublished_versions: bool


class TemplateItem(Answer):
    """The subset of a template that Resend's list answers carry."""

    id: Id
    name: str
    alias: str | None
    status: TemplateStatus
    published_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class TemplateList(ListOf[TemplateItem]):
    pass
