"""/events definitions over real HTTP, beside /events/send which they must not shadow."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$")


def assert_error(answer: httpx.Response, status: int, name: str, *words: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body == {"statusCode": status, "name": name, "message": body["message"]}
    for word in words:
        assert word in body["message"]


def create(api: httpx.Client, name: str, schema: dict[str, str] | None = None) -> str:
    answer = api.post("/events", json={"name": name, "schema": schema})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_create_then_get_by_id_and_name(api: httpx.Client) -> None:
    answer = api.post("/events", json={"name": "user.created", "schema": {"plan": "string"}})
    assert answer.status_code == 201
    created = answer.json()
    assert set(created) == {"object", "id"}
    assert created["object"] == "event"
    event_id = created["id"]
    for ref in (event_id, "user.created"):
        body = api.get(f"/events/{ref}").json()
        assert set(body) == {"object", "id", "name", "schema", "created_at", "updated_at"}
        assert body["object"] == "event"
        assert body["id"] == event_id
        assert body["name"] == "user.created"
        assert body["schema"] == {"plan": "string"}
        assert TIME.match(body["created_at"])
        assert TIME.match(body["updated_at"])


def test_without_schema(api: httpx.Client) -> None:
    answer = api.post("/events", json={"name": "ping"})
    assert answer.status_code == 201
    assert api.get("/events/ping").json()["schema"] is None


def test_update_list_delete(api: httpx.Client) -> None:
    first = create(api, "order.paid", {"amount": "number"})
    second = create(api, "order.refunded")
    answer = api.patch(
        "/events/order.paid", json={"schema": {"amount": "number", "at": "date", "vip": "boolean"}}
    )
    assert answer.status_code == 200
    assert answer.json() == {"object": "event", "id": first}
    body = api.get(f"/events/{first}").json()
    assert body["schema"] == {"amount": "number", "at": "date", "vip": "boolean"}
    assert body["updated_at"] > body["created_at"]

    answer = api.patch(f"/events/{first}", json={"schema": None})
    assert answer.json() == {"object": "event", "id": first}
    assert api.get(f"/events/{first}").json()["schema"] is None

    listed = api.get("/events").json()
    assert listed["object"] == "list"
    assert listed["has_more"] is False
    assert [item["id"] for item in listed["data"]] == [second, first]
    assert listed["data"][1]["name"] == "order.paid"
    assert set(listed["data"][1]) == {"id", "name", "schema", "created_at", "updated_at"}

    answer = api.delete("/events/order.paid")
    assert answer.json() == {"object": "event", "id": first, "deleted": True}
    assert_error(api.get(f"/events/{first}"), 404, "not_found", "Event not found")


def test_schema_is_enforced_by_send(api: httpx.Client) -> None:
    create(api, "typed", {"count": "number"})
    answer = api.post(
        "/events/send",
        json={"event": "typed", "email": "t@example.test", "payload": {"count": "x"}},
    )
    assert_error(answer, 422, "validation_error", "payload.count")
    answer = api.post(
        "/events/send", json={"event": "typed", "email": "t@example.test", "payload": {"count": 2}}
    )
    assert answer.status_code == 202


def test_send_and_batch_are_not_shadowed(api: httpx.Client) -> None:
    answer = api.post("/events/send", json={"event": "x", "email": "s@example.test"})
    assert answer.status_code == 202
    answer = api.post("/events/batch", json=[{"event": "x", "email": "s@example.test"}])
    assert answer.status_code == 202
    assert_error(api.get("/events/send"), 404, "not_found", "Event not found")


def test_reserved_and_duplicate_names(api: httpx.Client) -> None:
    assert_error(
        api.post("/events", json={"name": "resend:email.sent"}),
        422,
        "validation_error",
        "`resend:`",
    )
    assert_error(api.post("/events", json={"name": "Resend:x"}), 422, "validation_error")
    create(api, "taken")
    assert_error(
        api.post("/events", json={"name": "taken", "schema": {"a": "string"}}),
        422,
        "validation_error",
        "`taken`",
    )
    assert api.get("/events/taken").json()["schema"] is None
    assert len(api.get("/events").json()["data"]) == 1


def test_unknown_is_404(api: httpx.Client) -> None:
    for answer in (
        api.get(f"/events/{uuid.uuid4()}"),
        api.get("/events/nothing.here"),
        api.patch("/events/nothing.here", json={"schema": None}),
        api.delete("/events/nothing.here"),
    ):
        assert_error(answer, 404, "not_found", "Event not found")


@pytest.mark.parametrize(
    ("body", "name", "field"),
    [
        ({}, "missing_required_field", "`name`"),
        ({"name": ""}, "validation_error", "`name`"),
        ({"name": "  "}, "validation_error", "`name`"),
        ({"name": 3}, "validation_error", "`name`"),
        ({"name": "x" * 256}, "validation_error", "`name`"),
        ({"name": "x", "schema": ["string"]}, "validation_error", "`schema`"),
        ({"name": "x", "schema": {"a": "text"}}, "validation_error", "`schema.a`"),
        ({"name": "x", "schema": {"a": 1}}, "validation_error", "`schema.a`"),
        ({"name": "x", "payload": {}}, "validation_error", "`payload`"),
    ],
)
def test_bad_create_bodies(api: httpx.Client, body: dict[str, Any], name: str, field: str) -> None:
    assert_error(api.post("/events", json=body), 422, name, field)
    assert api.get("/events").json()["data"] == []


@pytest.mark.parametrize(
    ("body", "name", "field"),
    [
        ({}, "missing_required_field", "`schema`"),
        ({"schema": {"a": "uuid"}}, "validation_error", "`schema.a`"),
        ({"schema": "string"}, "validation_error", "`schema`"),
        ({"schema": None, "name": "renamed"}, "validation_error", "`name`"),
    ],
)
def test_bad_update_bodies(api: httpx.Client, body: dict[str, Any], name: str, field: str) -> None:
    create(api, "stable", {"a": "string"})
    assert_error(api.patch("/events/stable", json=body), 422, name, field)
    assert api.get("/events/stable").json()["schema"] == {"a": "string"}
