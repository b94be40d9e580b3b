"""/domains over real HTTP: created `not_started`, verified by the operator."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$")
FIELDS = {
    "object",
    "id",
    "name",
    "status",
    "created_at",
    "region",
    "records",
    "open_tracking",
    "click_tracking",
    "tls",
    "custom_return_path",
    "tracking_subdomain",
    "capabilities",
}
SENDING_ONLY = {"sending": "enabled", "receiving": "disabled"}


def assert_error(answer: httpx.Response, status: int, name: str, *words: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body == {"statusCode": status, "name": name, "message": body["message"]}
    for word in words:
        assert word in body["message"]


def create(api: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    answer = api.post("/domains", json={"name": name, **fields})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_create_answers_the_domain_object(api: httpx.Client) -> None:
    body = create(api, "Mail.Example.COM")
    assert set(body) == FIELDS
    assert body["object"] == "domain"
    uuid.UUID(body["id"])
    assert body["name"] == "mail.example.com"
    assert body["status"] == "not_started"
    assert TIME.match(body["created_at"])
    assert body["region"] == "us-east-1"
    assert body["records"] == []
    assert body["open_tracking"] is False
    assert body["click_tracking"] is False
    assert body["tls"] == "opportunistic"
    assert body["custom_return_path"] == "send"
    assert body["tracking_subdomain"] is None
    assert body["capabilities"] == SENDING_ONLY
    assert api.get(f"/domains/{body['id']}").json() == body


def test_capabilities_are_sending_only(api: httpx.Client) -> None:
    """Resend's `capabilities`: sending is what this server does, receiving it does not."""
    body = create(api, "caps.test", capabilities={"sending": "enabled"})
    assert body["capabilities"] == SENDING_ONLY
    answer = api.patch(f"/domains/{body['id']}", json={"capabilities": SENDING_ONLY})
    assert answer.status_code == 200, answer.text
    receiving = {"capabilities": {"receiving": "enabled"}}
    assert_error(
        api.patch(f"/domains/{body['id']}", json=receiving),
        422,
        "validation_error",
        "`capabilities.receiving`",
    )
    assert_error(
        api.post("/domains", json={"name": "in.test", **receiving}),
        422,
        "validation_error",
        "`capabilities.receiving`",
    )


def test_create_with_settings(api: httpx.Client) -> None:
    body = create(
        api,
        "acme.test",
        region="eu-west-1",
        custom_return_path="Bounce",
        open_tracking=True,
        click_tracking=True,
        tls="enforced",
        tracking_subdomain="links",
    )
    assert body["region"] == "eu-west-1"
    assert body["custom_return_path"] == "bounce"
    assert body["open_tracking"] is True
    assert body["click_tracking"] is True
    assert body["tls"] == "enforced"
    assert body["tracking_subdomain"] == "links"


def test_update_verify_list_delete(api: httpx.Client) -> None:
    first = create(api, "one.test")
    second = create(api, "two.test")
    answer = api.patch(
        f"/domains/{first['id']}",
        json={"id": first["id"], "open_tracking": True, "tls": "enforced"},
    )
    assert answer.status_code == 200
    updated = answer.json()
    assert updated["object"] == "domain"
    assert updated["id"] == first["id"]
    assert updated["open_tracking"] is True
    assert updated["click_tracking"] is False
    assert updated["tls"] == "enforced"

    answer = api.post(f"/domains/{first['id']}/verify")
    assert answer.status_code == 200
    assert answer.json()["object"] == "domain"
    assert answer.json()["id"] == first["id"]
    assert answer.json()["status"] == "verified"
    assert api.get(f"/domains/{first['id']}").json()["status"] == "verified"

    listed = api.get("/domains").json()
    assert listed["object"] == "list"
    assert listed["has_more"] is False
    assert [item["id"] for item in listed["data"]] == [second["id"], first["id"]]
    assert listed["data"][1]["status"] == "verified"
    assert listed["data"][1]["name"] == "one.test"
    assert set(listed["data"][1]) == FIELDS - {"object"}

    answer = api.delete(f"/domains/{first['id']}")
    assert answer.json() == {"object": "domain", "id": first["id"], "deleted": True}
    assert_error(api.get(f"/domains/{first['id']}"), 404, "not_found", "Domain not found")


def test_duplicate_name_is_422(api: httpx.Client) -> None:
    create(api, "dup.test")
    answer = api.post("/domains", json={"name": "DUP.test."})
    assert_error(answer, 422, "validation_error", "`dup.test`")
    assert len(api.get("/domains").json()["data"]) == 1


def test_unknown_and_malformed_ids(api: httpx.Client) -> None:
    missing = uuid.uuid4()
    for answer in (
        api.get(f"/domains/{missing}"),
        api.patch(f"/domains/{missing}", json={"open_tracking": True}),
        api.delete(f"/domains/{missing}"),
        api.post(f"/domains/{missing}/verify"),
    ):
        assert_error(answer, 404, "not_found", "Domain not found")
    for answer in (
        api.get("/domains/example.com"),
        api.patch("/domains/x", json={}),
        api.delete("/domains/x"),
        api.post("/domains/x/verify"),
    ):
        assert_error(answer, 422, "invalid_parameter", "The `domain_id` must be a valid UUID.")


@pytest.mark.parametrize(
    ("body", "name", "field"),
    [
        ({}, "missing_required_field", "`name`"),
        ({"name": 5}, "validation_error", "`name`"),
        ({"name": "localhost"}, "validation_error", "`name`"),
        ({"name": "exa mple.com"}, "validation_error", "`name`"),
        ({"name": "-bad.com"}, "validation_error", "`name`"),
        ({"name": "10.0.0.1"}, "validation_error", "`name`"),
        ({"name": "a.com", "region": "mars-1"}, "validation_error", "`region`"),
        ({"name": "a.com", "tls": "sometimes"}, "validation_error", "`tls`"),
        ({"name": "a.com", "open_tracking": "yes"}, "validation_error", "`open_tracking`"),
        (
            {"name": "a.com", "custom_return_path": "a.b"},
            "validation_error",
            "`custom_return_path`",
        ),
        ({"name": "a.com", "dkim": True}, "validation_error", "`dkim`"),
    ],
)
def test_bad_domain_bodies(api: httpx.Client, body: dict[str, Any], name: str, field: str) -> None:
    assert_error(api.post("/domains", json=body), 422, name, field)
    assert api.get("/domains").json()["data"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"open_tracking": None}, "`open_tracking`"),
        ({"click_tracking": 1}, "`click_tracking`"),
        ({"name": "renamed.test"}, "`name`"),
        ({"id": str(uuid.uuid4())}, "`id`"),
    ],
)
def test_bad_domain_updates(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    domain = create(api, "kept.test")
    assert_error(api.patch(f"/domains/{domain['id']}", json=body), 422, "validation_error", field)
    assert api.get(f"/domains/{domain['id']}").json() == domain
