"""/templates over real HTTP: by id or alias, draft and published, variables checked."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$")

WELCOME = {
    "name": "Welcome",
    "alias": "welcome",
    "from": "Acme <hello@acme.test>",
    "subject": "Hi {{{FIRST_NAME}}}",
    "reply_to": "help@acme.test",
    "html": "<p>Hi {{{FIRST_NAME}}}, you have {{{CREDITS}}} credits. {{{contact.email}}}</p>",
    "text": "Hi {{{FIRST_NAME}}}",
    "variables": [
        {"key": "FIRST_NAME", "type": "string", "fallback_value": "there"},
        {"key": "CREDITS", "type": "number", "fallback_value": 5},
        {"key": "PLAN", "type": "string"},
    ],
}


def assert_error(answer: httpx.Response, status: int, name: str, *words: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body == {"statusCode": status, "name": name, "message": body["message"]}
    for word in words:
        assert word in body["message"]


def create(api: httpx.Client, **fields: Any) -> str:
    answer = api.post("/templates", json={"name": "T", "html": "<p>x</p>", **fields})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_create_then_get_by_id_and_alias(api: httpx.Client) -> None:
    answer = api.post("/templates", json=WELCOME)
    assert answer.status_code == 201
    created = answer.json()
    assert set(created) == {"object", "id"}
    assert created["object"] == "template"
    template_id = created["id"]
    for ref in (template_id, "welcome"):
        body = api.get(f"/templates/{ref}").json()
        assert body["object"] == "template"
        assert body["id"] == template_id
        assert body["name"] == "Welcome"
        assert body["alias"] == "welcome"
        assert body["status"] == "draft"
        assert body["from"] == "Acme <hello@acme.test>"
        assert body["subject"] == "Hi {{{FIRST_NAME}}}"
        assert body["reply_to"] == ["help@acme.test"]
        assert body["html"] == WELCOME["html"]
        assert body["text"] == "Hi {{{FIRST_NAME}}}"
        assert body["variables"] == [
            {"key": "FIRST_NAME", "type": "string", "fallback_value": "there"},
            {"key": "CREDITS", "type": "number", "fallback_value": 5},
            {"key": "PLAN", "type": "string", "fallback_value": None},
        ]
        assert TIME.match(body["created_at"])
        assert TIME.match(body["updated_at"])
        assert body["published_at"] is None


def test_minimal_template_defaults(api: httpx.Client) -> None:
    template_id = create(api)
    body = api.get(f"/templates/{template_id}").json()
    assert body["alias"] is None
    assert body["from"] is None
    assert body["subject"] is None
    assert body["reply_to"] is None
    assert body["text"] is None
    assert body["variables"] == []


def test_publish_then_list(api: httpx.Client) -> None:
    draft = create(api, name="Draft")
    published = create(api, name="Live", alias="live")
    answer = api.post("/templates/live/publish")
    assert answer.status_code == 200
    assert answer.json() == {"object": "template", "id": published}
    body = api.get(f"/templates/{published}").json()
    assert body["status"] == "published"
    assert TIME.match(body["published_at"])

    listed = api.get("/templates").json()
    assert listed["object"] == "list"
    assert listed["has_more"] is False
    assert [item["id"] for item in listed["data"]] == [published, draft]
    item = listed["data"][0]
    assert set(item) == {
        "id",
        "name",
        "alias",
        "status",
        "published_at",
        "created_at",
        "updated_at",
    }
    assert item["name"] == "Live"
    assert item["alias"] == "live"
    assert item["status"] == "published"
    assert item["published_at"] == body["published_at"]
    assert listed["data"][1]["status"] == "draft"
    assert listed["data"][1]["published_at"] is None


def test_an_edit_after_publishing_is_an_unpublished_version(api: httpx.Client) -> None:
    """Resend's `current_version_id` and `has_unpublished_versions`: the draft's edits wait
    for the next publish; a publish with nothing new changes nothing (a retry is safe)."""
    template_id = create(api, alias="versioned", subject="One")
    body = api.get("/templates/versioned").json()
    assert (body["current_version_id"], body["has_unpublished_versions"]) == (None, True)

    assert api.post("/templates/versioned/publish").status_code == 200
    published = api.get("/templates/versioned").json()
    assert uuid.UUID(published["current_version_id"])
    assert published["has_unpublished_versions"] is False
    assert api.post("/templates/versioned/publish").status_code == 200
    assert api.get("/templates/versioned").json() == published

    assert api.patch(f"/templates/{template_id}", json={"subject": "Two"}).status_code == 200
    edited = api.get("/templates/versioned").json()
    assert edited["subject"] == "Two"  # the draft, as an editor reads it back
    assert edited["current_version_id"] == published["current_version_id"]
    assert (edited["status"], edited["has_unpublished_versions"]) == ("published", True)

    api.post("/templates/versioned/publish").raise_for_status()
    republished = api.get("/templates/versioned").json()
    assert republished["current_version_id"] not in (None, published["current_version_id"])
    assert republished["has_unpublished_versions"] is False
    assert republished["published_at"] >= published["published_at"]
    # Template and versions point at each other: both go.
    assert api.delete("/templates/versioned").status_code == 200
    assert api.get("/templates/versioned").status_code == 404


def test_update_by_alias(api: httpx.Client) -> None:
    template_id = create(api, alias="old", subject="S", variables=[{"key": "A", "type": "string"}])
    before = api.get(f"/templates/{template_id}").json()
    answer = api.patch(
        "/templates/old",
        json={
            "alias": "new",
            "from": "x@acme.test",
            "reply_to": ["a@acme.test", "b@acme.test"],
            "subject": None,
            "variables": [{"key": "B", "type": "number", "fallback_value": 1.5}],
        },
    )
    assert answer.status_code == 200
    assert answer.json() == {"object": "template", "id": template_id}
    assert_error(api.get("/templates/old"), 404, "not_found", "Template not found")
    body = api.get("/templates/new").json()
    assert body["alias"] == "new"
    assert body["from"] == "x@acme.test"
    assert body["reply_to"] == ["a@acme.test", "b@acme.test"]
    assert body["subject"] is None
    assert body["name"] == "T"
    assert body["variables"] == [{"key": "B", "type": "number", "fallback_value": 1.5}]
    assert body["updated_at"] > before["updated_at"]


def test_update_keeps_a_published_template_published(api: httpx.Client) -> None:
    template_id = create(api)
    api.post(f"/templates/{template_id}/publish")
    api.patch(f"/templates/{template_id}", json={"html": "<p>new</p>"})
    body = api.get(f"/templates/{template_id}").json()
    assert body["status"] == "published"
    assert body["html"] == "<p>new</p>"


def test_duplicate_and_delete(api: httpx.Client) -> None:
    template_id = create(api, name="Orig", alias="orig", variables=[{"key": "K", "type": "string"}])
    api.post("/templates/orig/publish")
    answer = api.post("/templates/orig/duplicate")
    assert answer.status_code == 200  # Resend's; an automation's duplicate answers 201
    copy_id = answer.json()["id"]
    assert answer.json() == {"object": "template", "id": copy_id}
    copy = api.get(f"/templates/{copy_id}").json()
    assert copy["name"] == "Orig (copy)"
    assert copy["alias"] is None
    assert copy["status"] == "draft"
    assert copy["published_at"] is None
    assert copy["variables"] == [{"key": "K", "type": "string", "fallback_value": None}]

    answer = api.delete("/templates/orig")
    assert answer.json() == {"object": "template", "id": template_id, "deleted": True}
    assert_error(api.get(f"/templates/{template_id}"), 404, "not_found")
    assert api.get(f"/templates/{copy_id}").status_code == 200


def test_duplicate_alias_is_422(api: httpx.Client) -> None:
    create(api, alias="taken")
    other = create(api, alias="free")
    assert_error(
        api.post("/templates", json={"name": "x", "html": "y", "alias": "taken"}),
        422,
        "validation_error",
        "`taken`",
    )
    answer = api.patch(f"/templates/{other}", json={"alias": "taken"})
    assert_error(answer, 422, "validation_error", "`taken`")
    assert api.get(f"/templates/{other}").json()["alias"] == "free"
    assert len(api.get("/templates").json()["data"]) == 2


def test_unknown_template_is_404(api: httpx.Client) -> None:
    for answer in (
        api.get(f"/templates/{uuid.uuid4()}"),
        api.get("/templates/no-such-alias"),
        api.patch("/templates/no-such-alias", json={"name": "x"}),
        api.delete("/templates/no-such-alias"),
        api.post("/templates/no-such-alias/publish"),
        api.post("/templates/no-such-alias/duplicate"),
    ):
        assert_error(answer, 404, "not_found", "Template not found")


@pytest.mark.parametrize(
    ("body", "name", "words"),
    [
        ({"html": "x"}, "missing_required_field", ["`name`"]),
        ({"name": "x"}, "missing_required_field", ["`html`"]),
        ({"name": 1, "html": "x"}, "validation_error", ["`name`"]),
        ({"name": "x", "html": "x", "from": "nobody"}, "validation_error", ["`from`"]),
        ({"name": "x", "html": "x", "reply_to": [1]}, "validation_error", ["`reply_to"]),
        ({"name": "x", "html": "x", "alias": "has space"}, "validation_error", ["`alias`"]),
        # Each would be unreachable at /templates/{alias} as a client writes the path.
        *(
            ({"name": "x", "html": "x", "alias": alias}, "validation_error", ["`alias`", "URL"])
            for alias in ("..", ".", "a?b", "a#b", "a%2Fb", "a\\b", "a\x01b", "a\x7fb")
        ),
        ({"name": "x", "html": "x", "sender": "a@b.test"}, "validation_error", ["`sender`"]),
        (
            {"name": "x", "html": "x", "variables": [{"key": "A"}]},
            "missing_required_field",
            ["`variables.0.type`"],
        ),
        (
            {"name": "x", "html": "x", "variables": [{"key": "A", "type": "boolean"}]},
            "validation_error",
            ["`variables.0.type`"],
        ),
        (
            {"name": "x", "html": "x", "variables": [{"key": "1A", "type": "string"}]},
            "validation_error",
            ["`variables[0].key`"],
        ),
        (
            {
                "name": "x",
                "html": "x",
                "variables": [{"key": "RESEND_UNSUBSCRIBE_URL", "type": "string"}],
            },
            "validation_error",
            ["`variables[0].key`", "reserved"],
        ),
        (
            {
                "name": "x",
                "html": "x",
                "variables": [{"key": "A", "type": "string"}, {"key": "A", "type": "number"}],
            },
            "validation_error",
            ["`variables[1].key`", "twice"],
        ),
        (
            {
                "name": "x",
                "html": "x",
                "variables": [{"key": "N", "type": "number", "fallback_value": "5"}],
            },
            "validation_error",
            ["`variables[0].fallback_value`", "number"],
        ),
        (
            {
                "name": "x",
                "html": "x",
                "variables": [{"key": "S", "type": "string", "fallback_value": True}],
            },
            "validation_error",
            ["`variables[0].fallback_value`", "string"],
        ),
    ],
)
def test_bad_template_bodies_are_422_and_store_nothing(
    api: httpx.Client, body: dict[str, Any], name: str, words: list[str]
) -> None:
    assert_error(api.post("/templates", json=body), 422, name, *words)
    assert api.get("/templates").json()["data"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": None}, "`name`"), ({"html": None}, "`html`"), ({"html": 3}, "`html`")],
)
def test_bad_template_updates_are_422(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    template_id = create(api)
    assert_error(api.patch(f"/templates/{template_id}", json=body), 422, "validation_error", field)
    assert api.get(f"/templates/{template_id}").json()["html"] == "<p>x</p>"


def test_an_alias_that_is_a_uuid_is_422(api: httpx.Client) -> None:
    other = create(api)
    for alias in (other, other.replace("-", ""), f"{{{other}}}", str(uuid.uuid4())):
        assert_error(
            api.post("/templates", json={"name": "x", "html": "x", "alias": alias}),
            422,
            "validation_error",
            "`alias`",
            "UUID",
        )
        answer = api.patch(f"/templates/{other}", json={"alias": alias})
        assert_error(answer, 422, "validation_error", "`alias`", "UUID")
    assert [item["id"] for item in api.get("/templates").json()["data"]] == [other]


def test_an_alias_with_dots_inside_is_addressed_by_it(api: httpx.Client) -> None:
    template_id = create(api, alias="welcome.v2")
    assert api.post("/templates/welcome.v2/publish").json()["id"] == template_id
    assert api.get("/templates/welcome.v2").json()["status"] == "published"
    assert_error(
        api.patch(f"/templates/{template_id}", json={"alias": ".."}),
        422,
        "validation_error",
        "`alias`",
    )
    assert api.get(f"/templates/{template_id}").json()["alias"] == "welcome.v2"
