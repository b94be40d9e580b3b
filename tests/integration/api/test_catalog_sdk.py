"""The official `resend` Python SDK, pointed at our server, drives the catalog unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.harness import API_KEY, ApiServer, Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

resend = pytest.importorskip("resend")


@pytest.fixture
def sdk(rt_stack: Stack, api_server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The SDK module aimed at the live server over an empty database."""
    # The SDK reads RESEND_API_URL when imported, so the attribute is what counts now.
    monkeypatch.setenv("RESEND_API_URL", api_server.base_url)
    monkeypatch.setattr(resend, "api_url", api_server.base_url)
    monkeypatch.setattr(resend, "api_key", API_KEY)
    return resend


def test_contacts_and_segments(sdk: Any) -> None:
    created = sdk.Contacts.create(
        {"email": "sdk@example.test", "first_name": "Sdk", "properties": {"plan": "pro"}}
    )
    assert created["object"] == "contact"
    contact_id = created["id"]
    sdk.Contacts.update({"email": "sdk@example.test", "last_name": "User"})
    contact = sdk.Contacts.get(id=contact_id)
    assert contact["email"] == "sdk@example.test"
    assert contact["first_name"] == "Sdk"
    assert contact["last_name"] == "User"
    assert contact["properties"] == {"plan": "pro"}
    assert sdk.Contacts.get(email="sdk@example.test")["id"] == contact_id

    segment = sdk.Segments.create({"name": "SDK segment"})
    assert segment["object"] == "segment"
    assert segment["name"] == "SDK segment"
    assert sdk.Segments.get(segment["id"])["name"] == "SDK segment"
    added = sdk.Contacts.Segments.add({"segment_id": segment["id"], "email": "sdk@example.test"})
    assert added["id"] == segment["id"]
    listed = sdk.Contacts.Segments.list({"contact_id": contact_id})
    assert [item["id"] for item in listed["data"]] == [segment["id"]]
    members = sdk.Contacts.list(segment_id=segment["id"], params={"limit": 10})
    assert [item["id"] for item in members["data"]] == [contact_id]
    assert [item["id"] for item in sdk.Segments.list()["data"]] == [segment["id"]]

    removed = sdk.Contacts.Segments.remove({"segment_id": segment["id"], "contact_id": contact_id})
    assert removed["deleted"] is True
    assert sdk.Segments.remove(segment["id"])["deleted"] is True
    gone = sdk.Contacts.remove(email="sdk@example.test")
    assert gone["deleted"] is True
    assert gone["contact"] == contact_id
    with pytest.raises(sdk.exceptions.ResendError) as raised:
        sdk.Contacts.get(id=contact_id)
    assert raised.value.code == 404


def test_templates(sdk: Any) -> None:
    created = sdk.Templates.create(
        {
            "name": "SDK welcome",
            "alias": "sdk-welcome",
            "from": "Acme <hi@acme.test>",
            "subject": "Hello {{{NAME}}}",
            "reply_to": "help@acme.test",
            "html": "<p>Hello {{{NAME}}}</p>",
            "variables": [{"key": "NAME", "type": "string", "fallback_value": "friend"}],
        }
    )
    assert created["object"] == "template"
    template_id = created["id"]
    assert sdk.Templates.publish("sdk-welcome")["id"] == template_id
    template = sdk.Templates.get(template_id)
    assert template["status"] == "published"
    assert template["from"] == "Acme <hi@acme.test>"
    assert template["reply_to"] == ["help@acme.test"]
    assert template["variables"][0]["fallback_value"] == "friend"
    sdk.Templates.update({"id": template_id, "subject": "Hey"})
    assert sdk.Templates.get("sdk-welcome")["subject"] == "Hey"
    copy = sdk.Templates.duplicate(template_id)
    listed = sdk.Templates.list({"limit": 1})
    assert [item["id"] for item in listed["data"]] == [copy["id"]]
    assert listed["has_more"] is True
    assert sdk.Templates.remove(template_id)["deleted"] is True


def test_domains(sdk: Any) -> None:
    domain = sdk.Domains.create({"name": "sdk.acme.test", "region": "eu-west-1"})
    assert domain["status"] == "not_started"
    assert domain["records"] == []
    updated = sdk.Domains.update({"id": domain["id"], "click_tracking": True, "tls": "enforced"})
    assert updated["click_tracking"] is True
    assert sdk.Domains.verify(domain["id"])["status"] == "verified"
    fetched = sdk.Domains.get(domain["id"])
    assert fetched["status"] == "verified"
    assert fetched["region"] == "eu-west-1"
    assert fetched["tls"] == "enforced"
    assert [item["name"] for item in sdk.Domains.list()["data"]] == ["sdk.acme.test"]
    assert sdk.Domains.remove(domain["id"])["deleted"] is True


def test_event_definitions(sdk: Any) -> None:
    created = sdk.Events.create({"name": "sdk.signed_up", "schema": {"plan": "string"}})
    assert created["object"] == "event"
    event = sdk.Events.get("sdk.signed_up")
    assert event["id"] == created["id"]
    assert event["schema"] == {"plan": "string"}
    sdk.Events.update({"identifier": created["id"], "schema": {"plan": "string", "n": "number"}})
    assert sdk.Events.get(created["id"])["schema"] == {"plan": "string", "n": "number"}
    sent = sdk.Events.send({"event": "sdk.signed_up", "email": "e@example.test", "payload": {}})
    assert sent["object"] == "event"
    assert sent["event"] == "sdk.signed_up"
    assert [item["name"] for item in sdk.Events.list()["data"]] == ["sdk.signed_up"]
    assert sdk.Events.remove("sdk.signed_up")["deleted"] is True


def test_api_keys(sdk: Any) -> None:
    first = sdk.ApiKeys.create({"name": "first"})
    second = sdk.ApiKeys.create({"name": "second"})
    page = sdk.ApiKeys.list({"limit": 1})
    assert [item["id"] for item in page["data"]] == [second["id"]]
    assert page["has_more"] is True
    rest = sdk.ApiKeys.list({"limit": 1, "after": second["id"]})
    assert [item["id"] for item in rest["data"]] == [first["id"]]
    assert rest["has_more"] is False
    with pytest.raises(sdk.exceptions.ResendError) as raised:
        sdk.ApiKeys.list({"limit": 101})
    assert raised.value.code == 422

    renamed = sdk.ApiKeys.update({"id": first["id"], "name": "renamed"})
    assert (renamed["object"], renamed["id"]) == ("api_key", first["id"])
    assert [item["name"] for item in sdk.ApiKeys.list()["data"]] == ["second", "renamed"]
    with pytest.raises(sdk.exceptions.ResendError) as raised:
        sdk.ApiKeys.update({"id": first["id"], "name": ""})
    assert raised.value.code == 422
    assert sdk.ApiKeys.remove(first["id"])["deleted"] is True
    with pytest.raises(sdk.exceptions.ResendError) as raised:
        sdk.ApiKeys.update({"id": first["id"], "name": "gone"})
    assert raised.value.code == 404
