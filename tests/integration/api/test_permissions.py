"""Every route of the OpenAPI, called with a sending key and with a full key: a sending key may
only send. A route added without deciding who may call it fails here."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.harness import ApiServer, Stack
from wiring.server import create_server

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

# Open to anyone: probes, Prometheus, and the unsubscribe link in every email.
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/health/sweeper"),
    ("GET", "/metrics"),
    ("GET", "/unsubscribe/{token}"),
    ("POST", "/unsubscribe/{token}"),
}
# What a sending key may do (Resend: "only send emails"; here, events start the emails).
SENDING = {("POST", "/events/send"), ("POST", "/events/batch")}
RESTRICTED = {
    "statusCode": 401,
    "name": "restricted_api_key",
    "message": "This API key is restricted to only send emails",
}
RESTRICTED_NAME = (401, "restricted_api_key")
SEND_BODIES: dict[str, Any] = {
    "/events/send": {"event": "perm.check", "email": "perm@example.test"},
    "/events/batch": [{"event": "perm.check", "email": "perm@example.test"}],
}


def operations(stack: Stack) -> list[tuple[str, str]]:
    """(METHOD, path) of every operation in the app's OpenAPI schema."""
    app = create_server(stack.settings, runtime=stack.runtime, dispatcher=stack.dispatcher)
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return sorted((method.upper(), path) for path, ops in paths.items() for method in ops)


def call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    url = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
    body = SEND_BODIES.get(path, {}) if method in ("POST", "PATCH", "PUT") else None
    return client.request(method, url, json=body)


def key_names(api: httpx.Client) -> list[tuple[str, str]]:
    """The keys as a sending key could change them (its use changes its `last_used_at`)."""
    return [(key["id"], key["name"]) for key in api.get("/api-keys").json()["data"]]


@pytest.fixture
def sending_client(api: httpx.Client, api_server: ApiServer) -> httpx.Client:
    created = api.post("/api-keys", json={"name": "mailer", "permission": "sending_access"})
    assert created.status_code == 201
    return api_server.client(api_key=created.json()["token"])


def test_the_lists_name_real_routes(rt_stack: Stack) -> None:
    found = set(operations(rt_stack))
    missing = (PUBLIC | SENDING) - found
    assert not missing, missing


def test_a_sending_key_may_only_send(
    api: httpx.Client, sending_client: httpx.Client, rt_stack: Stack
) -> None:
    keys_before = key_names(api)
    wrong = {}
    with sending_client:
        for method, path in operations(rt_stack):
            answer = call(sending_client, method, path)
            if (method, path) in SENDING:
                ok = answer.status_code == 202
            elif (method, path) in PUBLIC:
                ok = answer.status_code != 401
            else:
                ok = answer.status_code == 401 and answer.json() == RESTRICTED
            if not ok:
                wrong[f"{method} {path}"] = (answer.status_code, answer.text[:200])
    assert not wrong, wrong
    # In particular it cannot mint itself a full key, nor see, rename or delete the others.
    assert key_names(api) == keys_before


def test_a_full_key_is_never_restricted(api: httpx.Client, rt_stack: Stack) -> None:
    wrong = {}
    for method, path in operations(rt_stack):
        answer = call(api, method, path)
        if answer.status_code in (401, 500):
            wrong[f"{method} {path}"] = (answer.status_code, answer.text[:200])
    assert not wrong, wrong


def test_without_a_key_only_the_public_routes_answer(
    api_server: ApiServer, rt_stack: Stack
) -> None:
    wrong = {}
    with api_server.client(api_key=None) as anonymous:
        for method, path in operations(rt_stack):
            answer = call(anonymous, method, path)
            refused = answer.status_code == 401 and answer.json()["name"] == "missing_api_key"
            if refused == ((method, path) in PUBLIC):
                wrong[f"{method} {path}"] = (answer.status_code, answer.text[:200])
    assert not wrong, wrong


def test_a_domain_restriction_that_would_not_hold_is_refused(api: httpx.Client) -> None:
    """Resend's `domain_id` restricts a sending key to one domain. Nothing here could keep
    that promise (a key sends events; the automation names the sender), so a key asked for
    with it is refused, not created without the restriction."""
    keys_before = api.get("/api-keys").json()["data"]
    domain = api.post("/domains", json={"name": "only-this.example"}).json()["id"]
    for permission in ("sending_access", "full_access"):
        body = {"name": "scoped", "permission": permission, "domain_id": domain}
        refused = api.post("/api-keys", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["name"] == "validation_error"
        assert "`domain_id` is not supported" in refused.json()["message"]
        assert "token" not in refused.json()
    assert api.get("/api-keys").json()["data"] == keys_before


def test_a_malformed_body_is_refused_before_it_is_judged(
    api: httpx.Client, api_server: ApiServer, sending_client: httpx.Client, rt_stack: Stack
) -> None:
    """FastAPI decodes a JSON body before it checks the key: a caller the route would refuse
    is refused all the same, not told that its body is malformed."""
    wrong = {}
    with api_server.client(api_key=None) as anonymous, sending_client:
        for method, path in operations(rt_stack):
            if method not in ("POST", "PATCH", "PUT") or (method, path) in PUBLIC:
                continue
            url = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
            answers = {
                who: client.request(
                    method, url, content=b"{", headers={"content-type": "application/json"}
                )
                for who, client in (
                    ("anonymous", anonymous),
                    ("sending", sending_client),
                    ("full", api),
                )
            }
            names = {who: (a.status_code, a.json().get("name")) for who, a in answers.items()}
            sending = (method, path) in SENDING
            if (
                names["anonymous"] != (401, "missing_api_key")
                or names["sending"] != ((422, "validation_error") if sending else RESTRICTED_NAME)
                or names["full"][0] in (401, 500)  # 422, or 404 where no body is read
            ):
                wrong[f"{method} {path}"] = names
    assert not wrong, wrong
