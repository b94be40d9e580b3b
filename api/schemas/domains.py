"""Bodies and answers of the domain endpoints, in Resend's field names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from api.schemas.shapes import Answer, Body, Id, ListOf, Timestamp
from models.enums import DomainStatus

Region = Literal["us-east-1", "eu-west-1", "sa-east-1", "ap-northeast-1"]
Tls = Literal["opportunistic", "enforced"]


class Capabilities(Body):
    """Resend's `capabilities`: this server sends mail and receives none, so only that is taken."""

    sending: Literal["enabled"] = "enabled"
    receiving: Literal["disabled"] = "disabled"


SENDING_ONLY = Capabilities()


class CreateDomain(Body):
    name: str = Field(min_length=1, max_length=253, json_schema_extra={"format": "hostname"})
    region: Region = "us-east-1"
    custom_return_path: str | None = Field(default=None, min_length=1, max_length=63)
    open_tracking: bool = False
    click_tracking: bool = False
    tls: Tls = "opportunistic"
    tracking_subdomain: str | None = Field(default=None, min_length=1, max_length=63)
    capabilities: Capabilities | None = None


class UpdateDomain(Body):
    # The SDK sends the id it addressed the domain by; the path decides.
    id: str | None = Field(default=None, max_length=36)
    open_tracking: bool | None = None
    click_tracking: bool | None = None
    tls: Tls | None = None
    tracking_subdomain: str | None = Field(default=None, min_length=1, max_length=63)
    capabilities: Capabilities | None = None


class DomainDeleted(Answer):
    object: Literal["domain"] = "domain"
    id: Id
    deleted: Literal[True] = True


class DomainItem(Answer):
    """A domain as a list shows it."""

    id: Id
    name: str
    status: DomainStatus
    created_at: Timestamp
    region: Region
    records: list[dict[str, Any]] = Field(
        description="Always empty: no DNS is looked up here, an operator verifies a domain"
    )
    open_tracking: bool
    click_tracking: bool
    tls: Tls
    custom_return_path: str
    tracking_subdomain: str | None
    capabilities: Capabilities


class DomainList(ListOf[DomainItem]):
    pass


class _DomainObject(Answer):
    # A base listed last puts its field first: `object` leads, as Resend writes it.
    object: Literal["domain"] = "domain"


class Domain(DomainItem, _DomainObject):
    """The answer to a create, a retrieve, an update and a verify."""
