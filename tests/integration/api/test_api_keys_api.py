"""A deleted API key stops working in every API process within about a second."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import httpx
import pytest

from api.key_cache import KEY_CACHE_SECONDS
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
