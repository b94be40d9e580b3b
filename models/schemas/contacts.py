"""Bodies of the contact and segment endpoints, in Resend's field names."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Flat scalars, as in Resend; the engine checks keys and values so its message names the key.
Properties = dict[str, Any]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SegmentRef(_Body):
    id: str = Field(min_length=1, max_length=36)


class CreateContact(_Body):
    email: str = Field(min_length=3, max_length=320)
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    unsubscribed: bool = False
    properties: Properties | None = Field(default=None, max_length=100)
    segments: list[SegmentRef] | None = Field(default=None, max_length=100)


class UpdateContact(_Body):
    # The SDK sends the identifier it addressed the contact by; it must name the same contact.
    id: str | None = Field(default=None, max_length=36)
    email: str | None = Field(default=None, max_length=320)
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    unsubscribed: bool | None = None
    properties: Properties | None = Field(default=None, max_length=100)


class CreateSegment(_Body):
    name: str = Field(min_length=1, max_length=255)


class UpdateSegment(_Body):
    name: str = Field(min_length=1, max_length=255)
