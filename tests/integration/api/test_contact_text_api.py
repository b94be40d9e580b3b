"""A contact's identity and free text, alike on PostgreSQL and SQLite."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)


def refused(answer: httpx.Response, message: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.json() == {"statusCode": 422, "name": "validation_error", "message": message}


def test_one_address_in_any_case_spacing_or_domain_form_is_one_contact(
    api: httpx.Client,
) -> None:
    created = api.post("/contacts", json={"email": "  Ada@Bücher.Example "})
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]
    sent = api.post(
        "/events/send", json={"event": "user.created", "email": "ADA@xn--bcher-kva.example"}
    )
    assert sent.status_code == 202, sent.text

    for ref in ("ada@bücher.example", "ADA@BÜCHER.EXAMPLE", "ada@xn--bcher-kva.example"):
        found = api.get(f"/contacts/{ref}")
        assert found.status_code == 200, found.text
        assert found.json()["id"] == contact_id
        assert found.json()["email"] == "ada@xn--bcher-kva.example"
    again = api.post("/contacts", json={"email": "ada@BÜCHER.example"})
    refused(again, "A contact with the email `ada@xn--bcher-kva.example` already exists.")
    # A tag is another mailbox, as far as anyone but its provider knows: another contact.
    assert api.post("/contacts", json={"email": "ada+news@bücher.example"}).status_code == 201
    assert len(api.get("/contacts").json()["data"]) == 2


@pytest.mark.parametrize("field", ["first_name", "last_name"])
def test_a_name_with_a_nul_is_refused_by_name(api: httpx.Client, field: str) -> None:
    """SQLite would store it (and an email would carry it); PostgreSQL cannot."""
    message = f"`{field}` holds a NUL character, which cannot be stored"
    refused(api.post("/contacts", json={"email": "ada@example.com", field: "A\x00"}), message)
    assert api.get("/contacts/ada@example.com").status_code == 404

    assert api.post("/contacts", json={"email": "ada@example.com", field: "Ada"}).status_code == 201
    refused(api.patch("/contacts/ada@example.com", json={field: "\x00"}), message)
    assert api.get("/contacts/ada@example.com").json()[field] == "Ada"


def test_a_segment_name_with_a_nul_is_refused_by_name(api: httpx.Client) -> None:
    message = "`name` holds a NUL character, which cannot be stored"
    refused(api.post("/segments", json={"name": "Trial\x00"}), message)
    assert api.get("/segments").json()["data"] == []

    segment_id = api.post("/segments", json={"name": "Trial"}).json()["id"]
    refused(api.patch(f"/segments/{segment_id}", json={"name": "\x00"}), message)
    assert api.get(f"/segments/{segment_id}").json()["name"] == "Trial"
