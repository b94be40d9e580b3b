"""Text the database cannot store (a NUL character, a lone surrogate) is refused before any
statement sees it: a 422 that names the field, alike on PostgreSQL and SQLite, never the
generic "cannot be stored" answer, a 500, or (on SQLite) a row PostgreSQL could not hold."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)

NUL, SURROGATE = "\x00", "\ud800"
TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
# A field the API types as a string refuses a lone surrogate in pydantic's words.
PROBLEMS = {
    NUL: ("holds a NUL character",),
    SURROGATE: ("holds a lone surrogate", "unable to parse raw data as a unicode string"),
}


def send(api: httpx.Client, method: str, path: str, body: Any = None) -> httpx.Response:
    """As ASCII JSON: a lone surrogate travels as its \\u escape."""
    if body is None:
        return api.request(method, path)
    content = json.dumps(body)
    return api.request(method, path, content=content, headers={"content-type": "application/json"})


def refused(answer: httpx.Response, field: str, bad: str) -> None:
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["name"] == "validation_error", body
    assert f"`{field}`" in body["message"], body
    assert any(problem in body["message"] for problem in PROBLEMS[bad]), body


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_in_a_body(api: httpx.Client, bad: str) -> None:
    template = send(api, "POST", "/templates", {"name": "t", "html": "<p>x</p>"}).json()["id"]
    definition = send(api, "POST", "/events", {"name": "user.paid"}).json()["id"]
    simulate = {
        "automation": {"steps": [TRIGGER], "connections": []},
        "contact": {"email": "ada@example.test"},
        "events": [{"name": "paid" + bad, "after": "1 day"}],
    }
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", "/automations/simulate", simulate, "events[0].name"),
        ("POST", "/events/send", {"event": "user" + bad, "email": "a@example.test"}, "event"),
        ("POST", "/events", {"name": "user" + bad}, "name"),
        ("POST", "/events", {"name": "user.seen", "schema": {"a" + bad: "string"}}, "schema"),
        ("PATCH", f"/events/{definition}", {"schema": {"a" + bad: "string"}}, "schema"),
        ("POST", "/templates", {"name": "t" + bad, "html": "x"}, "name"),
        ("POST", "/templates", {"name": "t", "html": "x" + bad}, "html"),
        ("POST", "/templates", {"name": "t", "html": "x", "text": "x" + bad}, "text"),
        ("PATCH", f"/templates/{template}", {"html": "y" + bad}, "html"),
        ("POST", "/api-keys", {"name": "k" + bad}, "name"),
    ]
    for method, path, body, field in cases:
        refused(send(api, method, path, body), field, bad)
    batch = send(api, "POST", "/events/batch", [{"event": "x" + bad, "email": "a@example.test"}])
    # Named by its place: events[0].event (ours), `0.event` (pydantic's).
    refused(batch, "event" if bad == NUL else "0.event", bad)

    assert [t["id"] for t in api.get("/templates").json()["data"]] == [template]
    assert [e["id"] for e in api.get("/events").json()["data"]] == [definition]
    assert api.get(f"/events/{definition}").json()["schema"] is None


def test_in_a_path(api: httpx.Client) -> None:
    """A name, alias or email in a path is looked up: one with a NUL names nothing storable."""
    assert send(api, "POST", "/contacts", {"email": "ada@example.test"}).status_code == 201
    cases = [
        ("GET", "/contacts/ada%00@example.test", "contact_id"),
        ("DELETE", "/contacts/ada%00@example.test", "contact_id"),
        ("GET", "/contacts/ada%00@example.test/segments", "contact_id"),
        ("GET", "/events/user%00paid", "event_id"),
        ("GET", "/templates/welcome%00", "template_id"),
    ]
    for method, path, field in cases:
        refused(send(api, method, path), field, NUL)
    assert api.get("/contacts/ada@example.test").status_code == 200
