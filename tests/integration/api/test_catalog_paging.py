"""Cursor pagination of every catalog list: contacts, segments, templates, domains, events,
API keys."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

COUNT = 5


def _created(answer: httpx.Response) -> str:
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def contacts(api: httpx.Client) -> tuple[str, list[str]]:
    ids = [
        _created(api.post("/contacts", json={"email": f"p{i}@example.test"})) for i in range(COUNT)
    ]
    return "/contacts", ids


def segments(api: httpx.Client) -> tuple[str, list[str]]:
    return "/segments", [
        _created(api.post("/segments", json={"name": f"S{i}"})) for i in range(COUNT)
    ]


def templates(api: httpx.Client) -> tuple[str, list[str]]:
    ids = [
        _created(api.post("/templates", json={"name": f"T{i}", "html": "<p/>"}))
        for i in range(COUNT)
    ]
    return "/templates", ids


def domains(api: httpx.Client) -> tuple[str, list[str]]:
    return "/domains", [
        _created(api.post("/domains", json={"name": f"d{i}.test"})) for i in range(COUNT)
    ]


def events(api: httpx.Client) -> tuple[str, list[str]]:
    return "/events", [_created(api.post("/events", json={"name": f"e.{i}"})) for i in range(COUNT)]


def api_keys(api: httpx.Client) -> tuple[str, list[str]]:
    return "/api-keys", [
        _created(api.post("/api-keys", json={"name": f"k{i}"})) for i in range(COUNT)
    ]


def contact_segments(api: httpx.Client) -> tuple[str, list[str]]:
    _created(api.post("/contacts", json={"email": "member@example.test"}))
    _created(api.post("/segments", json={"name": "not a member"}))
    _, ids = segments(api)
    for segment_id in ids:
        api.post(f"/contacts/member@example.test/segments/{segment_id}").raise_for_status()
    return "/contacts/member@example.test/segments", ids


def segment_contacts(api: httpx.Client) -> tuple[str, list[str]]:
    segment_id = _created(api.post("/segments", json={"name": "members"}))
    _created(api.post("/contacts", json={"email": "outsider@example.test"}))
    _, ids = contacts(api)
    for contact_id in ids:
        api.post(f"/contacts/{contact_id}/segments/{segment_id}").raise_for_status()
    return f"/segments/{segment_id}/contacts", ids


LISTS: dict[str, Callable[[httpx.Client], tuple[str, list[str]]]] = {
    "contacts": contacts,
    "segments": segments,
    "templates": templates,
    "domains": domains,
    "events": events,
    "api_keys": api_keys,
    "contact_segments": contact_segments,
    "segment_contacts": segment_contacts,
}


def page(api: httpx.Client, path: str, **params: str) -> tuple[list[str], bool]:
    answer = api.get(path, params=params)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "list"
    return [item["id"] for item in body["data"]], body["has_more"]


def assert_error(answer: httpx.Response, name: str, word: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.json()["name"] == name
    assert word in answer.json()["message"]


@pytest.mark.parametrize("kind", list(LISTS))
def test_pages_of_two_both_ways(api: httpx.Client, kind: str) -> None:
    path, ids = LISTS[kind](api)
    newest = ids[::-1]
    assert page(api, path) == (newest, False)
    assert page(api, path, limit="2") == (newest[0:2], True)
    assert page(api, path, limit="2", after=newest[1]) == (newest[2:4], True)
    assert page(api, path, limit="2", after=newest[3]) == (newest[4:5], False)
    assert page(api, path, limit="2", before=newest[4]) == (newest[2:4], True)
    assert page(api, path, limit="2", before=newest[2]) == (newest[0:2], False)
    assert page(api, path, limit="2", before=newest[0]) == ([], False)
    assert page(api, path, limit="100") == (newest, False)


@pytest.mark.parametrize("kind", list(LISTS))
def test_bad_cursors_and_limits(api: httpx.Client, kind: str) -> None:
    path, ids = LISTS[kind](api)
    both = api.get(path, params={"after": ids[0], "before": ids[1]})
    assert_error(both, "validation_error", "`after` or `before`")
    for limit in ("0", "101", "abc", "-1"):
        assert_error(api.get(path, params={"limit": limit}), "invalid_parameter", "`limit`")
    assert_error(api.get(path, params={"after": "nope"}), "invalid_parameter", "`after`")
    assert_error(api.get(path, params={"before": "nope"}), "invalid_parameter", "`before`")
    stranger = str(uuid.uuid4())
    assert_error(api.get(path, params={"after": stranger}), "invalid_parameter", "`after`")


def test_contacts_deleted_between_pages_neither_repeat_nor_shift(api: httpx.Client) -> None:
    """Deletions between pages neither repeat items nor skip any (docs/api.md)."""
    path, ids = contacts(api)
    segment_id = _created(api.post("/segments", json={"name": "All"}))
    for contact_id in ids:
        assert api.post(f"/contacts/{contact_id}/segments/{segment_id}").status_code == 200
    newest = ids[::-1]
    members = f"/segments/{segment_id}/contacts"
    assert page(api, path, limit="2") == (newest[0:2], True)
    assert page(api, members, limit="2") == (newest[0:2], True)

    assert api.delete(f"/contacts/{newest[2]}").status_code == 200  # the next page's first
    assert page(api, path, limit="2", after=newest[1]) == (newest[3:5], False)
    assert page(api, members, limit="2", after=newest[1]) == (newest[3:5], False)

    # A cursor that left the list (taken out of the segment, or deleted) still marks its place.
    assert api.delete(f"/contacts/{newest[1]}/segments/{segment_id}").status_code == 200
    assert page(api, members, limit="2", after=newest[1]) == (newest[3:5], False)
    assert page(api, members, limit="2", after=newest[0]) == (newest[3:5], False)
    assert page(api, path, limit="2", after=newest[1]) == (newest[3:5], False)
    assert api.delete(f"/contacts/{newest[1]}").status_code == 200
    assert page(api, path, limit="2", after=newest[1]) == (newest[3:5], False)
    assert page(api, path, limit="2", before=newest[1]) == (newest[0:1], False)


# How each list's item is deleted (for the two membership lists, the item itself).
DELETE_ITEM = {
    "contacts": "/contacts/{}",
    "segments": "/segments/{}",
    "templates": "/templates/{}",
    "domains": "/domains/{}",
    "events": "/events/{}",
    "api_keys": "/api-keys/{}",
    "contact_segments": "/segments/{}",
    "segment_contacts": "/contacts/{}",
}


@pytest.mark.parametrize("kind", list(LISTS))
def test_a_deleted_cursor_goes_on_from_where_it_was(api: httpx.Client, kind: str) -> None:
    """As Stripe's and Resend's lists: the next page of a page whose last item was deleted
    since is the one it would have been, both ways."""
    path, ids = LISTS[kind](api)
    newest = ids[::-1]
    assert page(api, path, limit="2") == (newest[0:2], True)
    assert api.delete(DELETE_ITEM[kind].format(newest[1])).status_code == 200
    assert page(api, path, limit="2", after=newest[1]) == (newest[2:4], True)
    assert page(api, path, limit="2", before=newest[1]) == (newest[0:1], False)
    assert page(api, path, limit="2", before=newest[2]) == (newest[0:1], False)
