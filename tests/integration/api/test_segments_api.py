"""/segments and contact memberships over real HTTP."""

from __future__ import annotations

import re
import uuid

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


def segment(api: httpx.Client, name: str) -> str:
    answer = api.post("/segments", json={"name": name})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def contact(api: httpx.Client, email: str) -> str:
    return str(api.post("/contacts", json={"email": email}).json()["id"])


def test_create_get_list_rename_delete(api: httpx.Client) -> None:
    answer = api.post("/segments", json={"name": "Trial users"})
    assert answer.status_code == 201
    created = answer.json()
    assert set(created) == {"object", "id", "name"}
    assert created["object"] == "segment"
    assert created["name"] == "Trial users"
    segment_id = created["id"]

    body = api.get(f"/segments/{segment_id}").json()
    assert body["object"] == "segment"
    assert body["id"] == segment_id
    assert body["name"] == "Trial users"
    assert TIME.match(body["created_at"])
    assert set(body) == {"object", "id", "name", "created_at"}

    other = segment(api, "Paying")
    listed = api.get("/segments").json()
    assert listed["object"] == "list"
    assert listed["has_more"] is False
    assert [item["id"] for item in listed["data"]] == [other, segment_id]
    assert listed["data"][1] == {
        "id": segment_id,
        "name": "Trial users",
        "created_at": body["created_at"],
    }

    answer = api.patch(f"/segments/{segment_id}", json={"name": "Trials"})
    assert answer.json() == {"object": "segment", "id": segment_id}
    assert api.get(f"/segments/{segment_id}").json()["name"] == "Trials"

    answer = api.delete(f"/segments/{segment_id}")
    assert answer.json() == {"object": "segment", "id": segment_id, "deleted": True}
    assert_error(api.get(f"/segments/{segment_id}"), 404, "not_found", "Segment not found")


def test_memberships_by_id_and_email(api: httpx.Client) -> None:
    first, second = segment(api, "A"), segment(api, "B")
    contact_id = contact(api, "member@example.test")

    answer = api.post(f"/contacts/{contact_id}/segments/{first}")
    assert answer.status_code == 200
    assert answer.json() == {
        "object": "contact_segment",
        "id": first,
        "contact_id": contact_id,
        "segment_id": first,
    }
    # Adding again changes nothing; the SDK's body is accepted and ignored.
    again = api.post(
        f"/contacts/member@example.test/segments/{first}",
        json={"segment_id": first, "email": "member@example.test"},
    )
    assert again.status_code == 200
    api.post(f"/contacts/member@example.test/segments/{second}")

    listed = api.get("/contacts/member@example.test/segments").json()
    assert listed["object"] == "list"
    assert listed["has_more"] is False
    assert [item["id"] for item in listed["data"]] == [second, first]
    assert listed["data"][1]["name"] == "A"
    assert TIME.match(listed["data"][1]["created_at"])

    members = api.get(f"/segments/{first}/contacts").json()
    assert [item["id"] for item in members["data"]] == [contact_id]
    assert members["data"][0]["email"] == "member@example.test"

    answer = api.delete(f"/contacts/{contact_id}/segments/{first}")
    assert answer.json() == {
        "object": "contact_segment",
        "id": first,
        "contact_id": contact_id,
        "segment_id": first,
        "deleted": True,
    }
    assert_error(api.delete(f"/contacts/{contact_id}/segments/{first}"), 404, "not_found")
    listed = api.get(f"/contacts/{contact_id}/segments").json()
    assert [item["id"] for item in listed["data"]] == [second]


def test_deleting_a_segment_keeps_its_contacts(api: httpx.Client) -> None:
    segment_id = segment(api, "Doomed")
    contact_id = contact(api, "stays@example.test")
    api.post(f"/contacts/{contact_id}/segments/{segment_id}")
    api.delete(f"/segments/{segment_id}")
    assert api.get(f"/contacts/{contact_id}").status_code == 200
    assert api.get(f"/contacts/{contact_id}/segments").json()["data"] == []


def test_deleting_a_contact_removes_its_memberships(api: httpx.Client) -> None:
    segment_id = segment(api, "Members")
    contact_id = contact(api, "leaves@example.test")
    api.post(f"/contacts/{contact_id}/segments/{segment_id}")
    api.delete(f"/contacts/{contact_id}")
    assert api.get(f"/segments/{segment_id}/contacts").json()["data"] == []


def test_unknown_and_malformed_ids(api: httpx.Client) -> None:
    contact_id = contact(api, "someone@example.test")
    segment_id = segment(api, "Real")
    missing = str(uuid.uuid4())
    for answer in (
        api.get(f"/segments/{missing}"),
        api.patch(f"/segments/{missing}", json={"name": "x"}),
        api.delete(f"/segments/{missing}"),
        api.get(f"/segments/{missing}/contacts"),
        api.post(f"/contacts/{contact_id}/segments/{missing}"),
        api.get("/contacts", params={"segment_id": missing}),
    ):
        assert_error(answer, 404, "not_found", "Segment not found")
    for answer in (
        api.post(f"/contacts/{missing}/segments/{segment_id}"),
        api.post(f"/contacts/nobody@example.test/segments/{segment_id}"),
        api.get("/contacts/nobody@example.test/segments"),
    ):
        assert_error(answer, 404, "not_found", "Contact not found")
    for answer in (
        api.get("/segments/nope"),
        api.patch("/segments/nope", json={"name": "x"}),
        api.delete("/segments/nope"),
        api.get("/segments/nope/contacts"),
        api.post(f"/contacts/{contact_id}/segments/nope"),
        api.delete(f"/contacts/{contact_id}/segments/nope"),
        api.get("/contacts", params={"segment_id": "nope"}),
    ):
        assert_error(answer, 422, "invalid_parameter", "The `segment_id` must be a valid UUID.")


@pytest.mark.parametrize(
    ("body", "name", "field"),
    [
        ({}, "missing_required_field", "`name`"),
        ({"name": ""}, "validation_error", "`name`"),
        ({"name": "   "}, "validation_error", "`name`"),
        ({"name": 5}, "validation_error", "`name`"),
        ({"name": "x" * 256}, "validation_error", "`name`"),
        ({"name": "x", "audience_id": "y"}, "validation_error", "`audience_id`"),
    ],
)
def test_bad_segment_bodies(
    api: httpx.Client, body: dict[str, object], name: str, field: str
) -> None:
    assert_error(api.post("/segments", json=body), 422, name, field)
    assert api.get("/segments").json()["data"] == []
