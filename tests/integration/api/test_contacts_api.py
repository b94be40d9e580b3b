"""/contacts over real HTTP: by id or email, Resend's wire shapes, validation."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.factories import (
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$")


def assert_error(answer: httpx.Response, status: int, name: str, *words: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"statusCode", "name", "message"}
    assert body["statusCode"] == status
    assert body["name"] == name
    for word in words:
        assert word in body["message"]


def create(api: httpx.Client, **fields: Any) -> str:
    answer = api.post("/contacts", json=fields)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_create_then_get_by_id_and_by_email(api: httpx.Client) -> None:
    answer = api.post(
        "/contacts",
        json={
            "email": "Ada@Example.test",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "properties": {"plan": "pro", "seats": 3, "beta": True},
        },
    )
    assert answer.status_code == 201
    created = answer.json()
    assert set(created) == {"object", "id"}
    assert created["object"] == "contact"
    contact_id = created["id"]
    uuid.UUID(contact_id)

    for ref in (contact_id, "ada@example.test", "ADA@example.test"):
        body = api.get(f"/contacts/{ref}").json()
        assert body["object"] == "contact"
        assert body["id"] == contact_id
        assert body["email"] == "ada@example.test"
        assert body["first_name"] == "Ada"
        assert body["last_name"] == "Lovelace"
        assert body["unsubscribed"] is False
        assert body["properties"] == {"plan": "pro", "seats": 3, "beta": True}
        assert TIME.match(body["created_at"])
        assert set(body) == {
            "object",
            "id",
            "email",
            "first_name",
            "last_name",
            "created_at",
            "unsubscribed",
            "properties",
        }


def test_minimal_contact_has_nulls_and_empty_properties(api: httpx.Client) -> None:
    contact_id = create(api, email="min@example.test")
    body = api.get(f"/contacts/{contact_id}").json()
    assert body["first_name"] is None
    assert body["last_name"] is None
    assert body["unsubscribed"] is False
    assert body["properties"] == {}


def test_update_by_id_and_by_email_merges_properties(api: httpx.Client) -> None:
    contact_id = create(api, email="bo@example.test", first_name="Bo", properties={"a": "1"})
    answer = api.patch(
        f"/contacts/{contact_id}", json={"last_name": "Diddley", "properties": {"b": 2}}
    )
    assert answer.status_code == 200
    assert answer.json() == {"object": "contact", "id": contact_id}
    # The SDK repeats the identifier in the body; it names the same contact.
    answer = api.patch(
        "/contacts/bo@example.test",
        json={"email": "bo@example.test", "unsubscribed": True, "first_name": None},
    )
    assert answer.json() == {"object": "contact", "id": contact_id}
    body = api.get(f"/contacts/{contact_id}").json()
    assert body["first_name"] is None
    assert body["last_name"] == "Diddley"
    assert body["unsubscribed"] is True
    assert body["properties"] == {"a": "1", "b": 2}


def test_update_refuses_another_contacts_identifier(api: httpx.Client) -> None:
    first = create(api, email="one@example.test")
    second = create(api, email="two@example.test")
    answer = api.patch(f"/contacts/{first}", json={"email": "two@example.test"})
    assert_error(answer, 422, "validation_error", "`email`")
    answer = api.patch(f"/contacts/{first}", json={"id": second, "first_name": "X"})
    assert_error(answer, 422, "validation_error", "`id`")
    assert api.get(f"/contacts/{first}").json()["first_name"] is None


def test_delete_by_email_then_404(api: httpx.Client) -> None:
    contact_id = create(api, email="gone@example.test")
    answer = api.delete("/contacts/gone@example.test")
    assert answer.status_code == 200
    assert answer.json() == {
        "object": "contact",
        "id": contact_id,
        "contact": contact_id,
        "deleted": True,
    }
    assert_error(api.get(f"/contacts/{contact_id}"), 404, "not_found", "Contact not found")
    assert_error(api.delete(f"/contacts/{contact_id}"), 404, "not_found")


def test_list_newest_first(api: httpx.Client) -> None:
    ids = [create(api, email=f"list{i}@example.test", first_name=f"N{i}") for i in range(3)]
    answer = api.get("/contacts")
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "list"
    assert body["has_more"] is False
    assert [item["id"] for item in body["data"]] == ids[::-1]
    item = body["data"][0]
    assert item["email"] == "list2@example.test"
    assert item["first_name"] == "N2"
    assert item["last_name"] is None
    assert item["unsubscribed"] is False
    assert item["properties"] == {}
    assert TIME.match(item["created_at"])


def test_duplicate_email_is_422_naming_it(api: httpx.Client) -> None:
    create(api, email="dup@example.test", first_name="First")
    answer = api.post("/contacts", json={"email": "DUP@example.test", "first_name": "Second"})
    assert_error(answer, 422, "validation_error", "dup@example.test")
    assert api.get("/contacts/dup@example.test").json()["first_name"] == "First"


def test_unknown_contact_is_404(api: httpx.Client) -> None:
    assert_error(api.get(f"/contacts/{uuid.uuid4()}"), 404, "not_found", "Contact not found")
    assert_error(api.get("/contacts/nobody@example.test"), 404, "not_found")
    assert_error(api.patch("/contacts/nobody@example.test", json={}), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "name", "words"),
    [
        ({}, "missing_required_field", ["`email`"]),
        ({"first_name": "x"}, "missing_required_field", ["`email`"]),
        ({"email": "not-an-email"}, "validation_error", ["`email`"]),
        ({"email": 42}, "validation_error", ["`email`"]),
        ({"email": "a@b.test", "unsubscribed": "yes"}, "validation_error", ["`unsubscribed`"]),
        ({"email": "a@b.test", "first_name": 7}, "validation_error", ["`first_name`"]),
        ({"email": "a@b.test", "properties": []}, "validation_error", ["`properties`"]),
        (
            {"email": "a@b.test", "properties": {"x": {"nested": 1}}},
            "validation_error",
            ["`properties.x"],
        ),
        ({"email": "a@b.test", "properties": {"bad key": 1}}, "validation_error", ["bad key"]),
        ({"email": "a@b.test", "topics": []}, "validation_error", ["`topics`"]),
        ({"email": "a@b.test", "first_name": "x" * 256}, "validation_error", ["`first_name`"]),
        (
            {"email": "a@b.test", "segments": [{"id": str(uuid.uuid4())}]},
            "validation_error",
            ["`segments[0].id`"],
        ),
    ],
)
def test_bad_create_bodies_are_422_and_store_nothing(
    api: httpx.Client, body: dict[str, Any], name: str, words: list[str]
) -> None:
    assert_error(api.post("/contacts", json=body), 422, name, *words)
    assert api.get("/contacts").json()["data"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"unsubscribed": None},
        {"unsubscribed": "true"},
        {"last_name": 3},
        {"properties": {"9lives": "x"}},
        {"audience_id": "x"},
    ],
)
def test_bad_update_bodies_are_422(api: httpx.Client, body: dict[str, Any]) -> None:
    contact_id = create(api, email="upd@example.test", last_name="Kept")
    assert_error(api.patch(f"/contacts/{contact_id}", json=body), 422, "validation_error")
    after = api.get(f"/contacts/{contact_id}").json()
    assert after["last_name"] == "Kept"
    assert after["unsubscribed"] is False
    assert after["properties"] == {}


def test_create_in_segments(api: httpx.Client) -> None:
    segment_id = api.post("/segments", json={"name": "VIP"}).json()["id"]
    contact_id = create(api, email="vip@example.test", segments=[{"id": segment_id}])
    listed = api.get(f"/contacts/{contact_id}/segments").json()
    assert [item["id"] for item in listed["data"]] == [segment_id]
    members = api.get("/contacts", params={"segment_id": segment_id}).json()
    assert [item["id"] for item in members["data"]] == [contact_id]


def test_create_in_segments_named_by_bare_ids(api: httpx.Client) -> None:
    """Resend's spec types `segments` as ids, its SDK as `{id}` objects: both are taken."""
    segment_id = api.post("/segments", json={"name": "VIP"}).json()["id"]
    contact_id = create(api, email="bare@example.test", segments=[segment_id])
    listed = api.get(f"/contacts/{contact_id}/segments").json()
    assert [item["id"] for item in listed["data"]] == [segment_id]
    assert_error(
        api.post("/contacts", json={"email": "x@example.test", "segments": [str(uuid.uuid4())]}),
        422,
        "validation_error",
        "`segments[0]",
    )


def test_contact_created_by_an_event_reads_back(api: httpx.Client) -> None:
    api.post("/events/send", json={"event": "signed.up", "email": "evt@example.test"})
    body = api.get("/contacts/evt@example.test").json()
    assert body["email"] == "evt@example.test"
    assert_error(api.post("/contacts", json={"email": "evt@example.test"}), 422, "validation_error")


def test_deleting_a_contact_ends_its_waiting_runs_now(api: httpx.Client, rt_stack: Stack) -> None:
    """Its run waiting 30 days for an event ends at the sweeper's next tick, the rest of its
    steps skipped as after a contact_delete; another contact's run keeps waiting."""
    make_domain(rt_stack)
    wait = {"event_name": "user.paid", "timeout": "30 days"}
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {"key": "wait", "type": "wait_for_event", "config": wait},
        send_email_step("mail", make_template(rt_stack)),
    ]
    connections = [
        {"from": "start", "to": "wait"},
        {"from": "wait", "to": "mail", "type": "event_received"},
    ]
    make_automation(rt_stack, steps, connections)
    gone, kept = unique_email("gone"), unique_email("kept")
    (gone_run,) = rt_stack.send("user.created", gone).run_ids
    (kept_run,) = rt_stack.send("user.created", kept).run_ids
    for run_id in (gone_run, kept_run):
        rt_stack.wait_step(run_id, "wait", "waiting")

    assert api.delete(f"/contacts/{gone}").status_code == 200
    rt_stack.sweep()

    assert rt_stack.wait_run(gone_run).status == "completed"
    ended = rt_stack.steps(gone_run)
    assert {key: (row.status, row.skip_reason) for key, row in ended.items()} == {
        "start": ("completed", None),
        "wait": ("skipped", "contact_deleted"),
        "mail": ("skipped", "contact_deleted"),
    }
    assert rt_stack.steps(kept_run)["wait"].status == "waiting"
