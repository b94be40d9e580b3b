"""A deleted API key stops working in every API process within about a second."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from api.key_cache import KEY_CACHE_SECONDS
from engine.db import transaction
from models.housekeeping import IdempotencyRecord
from tests.integration.harness import ApiServer, Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)


@pytest.fixture
def second_server(stack: Stack) -> Iterator[ApiServer]:
    """Another API process on the same database, as behind a load balancer."""
    server = ApiServer(stack)
    server.start()
    yield server
    server.stop()


def test_a_key_deleted_through_another_process_stops_working(
    api: httpx.Client, api_server: ApiServer, second_server: ApiServer
) -> None:
    created = api.post("/api-keys", json={"name": "short-lived"}).json()
    with (
        api_server.client(api_key=created["token"]) as here,
        second_server.client(api_key=created["token"]) as there,
        second_server.client() as operator_there,
    ):
        # Both processes have verified (and cached) the key.
        assert here.get("/automations").status_code == 200
        assert there.get("/automations").status_code == 200
        deleted = operator_there.delete(f"/api-keys/{created['id']}")
        assert deleted.status_code == 200
        assert there.get("/automations").status_code == 401
        time.sleep(KEY_CACHE_SECONDS + 0.5)
        answer = here.get("/automations")
        assert answer.status_code == 401 and answer.json()["name"] == "invalid_api_key"


def test_a_key_s_last_use_is_listed_to_the_minute(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack
) -> None:
    """Resend's `last_used_at`: null until the key authenticates a request, then when it did;
    written at most once a minute for a key in constant use."""

    def listed(key_id: str) -> str | None:
        (item,) = [k for k in api.get("/api-keys").json()["data"] if k["id"] == key_id]
        return item["last_used_at"]  # type: ignore[no-any-return]

    created = api.post("/api-keys", json={"name": "mailer"}).json()
    assert listed(created["id"]) is None
    with api_server.client(api_key=created["token"]) as mailer:
        assert mailer.get("/automations").status_code == 200
        first = listed(created["id"])
        assert first is not None and first.endswith("+00")
        time.sleep(KEY_CACHE_SECONDS + 0.2)  # looked up again, within the minute: not written
        assert mailer.get("/automations").status_code == 200
        assert listed(created["id"]) == first
        rt_stack.advance(dt.timedelta(minutes=2))
        time.sleep(KEY_CACHE_SECONDS + 0.2)
        assert mailer.get("/automations").status_code == 200
    assert listed(created["id"]) > first  # type: ignore[operator]


def test_signing_in_to_the_dashboard_is_a_use_of_the_key(
    api: httpx.Client, api_server: ApiServer
) -> None:
    created = api.post("/api-keys", json={"name": "operator"}).json()
    with api_server.client(api_key=None) as browser:
        form = browser.get("/dashboard/login").text
        token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        body = {"csrf_token": token, "api_key": created["token"]}
        assert browser.post("/dashboard/login", data=body).status_code == 303
    (item,) = [k for k in api.get("/api-keys").json()["data"] if k["id"] == created["id"]]
    assert item["last_used_at"] is not None


@pytest.fixture
def behind_a_prefix(rt_stack: Stack) -> Iterator[httpx.Client]:
    """The API behind a proxy at /automations (uvicorn's --root-path)."""
    server = ApiServer(rt_stack, root_path="/automations")
    server.start()
    with server.client() as client:
        yield client
    server.stop()


@pytest.mark.parametrize("where", ["api", "behind_a_prefix"])
def test_a_created_keys_secret_is_not_kept_for_an_idempotent_replay(
    where: str, request: pytest.FixtureRequest, rt_stack: Stack
) -> None:
    """The answer kept for an Idempotency-Key held the new key's secret, in clear, for 24 hours
    (and replayed it): it is now a refusal naming the key, and no second key is made; behind
    a path prefix too."""
    api: httpx.Client = request.getfixturevalue(where)
    headers = {"Idempotency-Key": "create-ops-key"}
    first = api.post("/api-keys", json={"name": "ops"}, headers=headers)
    assert first.status_code == 201
    created = first.json()
    with transaction(rt_stack.runtime.sessions) as session:
        kept = session.scalars(select(IdempotencyRecord.response_body)).all()
    assert kept and not any(created["token"].encode() in (body or b"") for body in kept)
    replay = api.post("/api-keys", json={"name": "ops"}, headers=headers)
    assert replay.status_code == 409 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["name"] == "invalid_idempotent_request"
    assert created["id"] in replay.json()["message"]
    assert created["token"] not in replay.text
    names = [key["name"] for key in api.get("/api-keys").json()["data"]]
    assert names.count("ops") == 1
    # The key works: only its secret's copy was dropped.
    with httpx.Client(base_url=str(api.base_url), timeout=10) as other:
        auth = {"Authorization": f"Bearer {created['token']}"}
        assert other.get("/automations", headers=auth).status_code == 200
