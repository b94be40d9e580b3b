"""Rate limit (a sliding window in Redis, per key, and per address without a valid key) and
the body size limit on chunked bodies, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from engine.db import transaction
from models.housekeeping import IdempotencyRecord
from models.tables import Event
from tests.integration.harness import API_KEY, ApiServer, Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

LIMIT = 5


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Iterator[ApiServer]:
    server = ApiServer(stack)
    server.start(AUTOMATIONS_RATE_LIMIT_PER_SECOND=str(LIMIT))
    yield server
    server.stop()


def new_key(api: httpx.Client) -> str:
    token: str = api.post("/api-keys", json={"name": "limited"}).json()["token"]
    return token


def count(stack: Stack, table: type) -> int:
    with transaction(stack.runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_never_more_than_the_limit_in_any_second_across_a_boundary(
    api: httpx.Client, limited: ApiServer
) -> None:
    admitted: list[tuple[float, float]] = []  # (sent, answered) of each admitted request
    refused: list[httpx.Response] = []
    with limited.client(api_key=new_key(api)) as client:
        # Start late in a wall-clock second: a fixed window would admit LIMIT more right after
        # the boundary (Redis's clock, which the limiter reads, is this machine's).
        time.sleep((0.6 - time.time() % 1) % 1)
        end = time.monotonic() + 2.3
        while time.monotonic() < end:
            sent = time.monotonic()
            answer = client.get("/automations")
            if answer.status_code == 200:
                admitted.append((sent, time.monotonic()))
                assert answer.headers["ratelimit-limit"] == str(LIMIT)
            else:
                assert answer.status_code == 429, answer.text
                refused.append(answer)
            time.sleep(0.01)
    # Admitted request i+LIMIT reached the server at least a second after request i did.
    for first, later in zip(admitted, admitted[LIMIT:], strict=False):
        assert later[1] - first[0] >= 0.99, admitted
    assert len(admitted) >= 2 * LIMIT and refused
    last = refused[-1]
    assert last.json()["name"] == "rate_limit_exceeded"
    assert int(last.headers["retry-after"]) >= 1
    assert last.headers["ratelimit-remaining"] == "0"
    assert int(last.headers["ratelimit-reset"]) >= 1


def test_requests_without_a_valid_key_are_limited_by_address(
    api: httpx.Client, limited: ApiServer
) -> None:
    in_use, guessed_right = new_key(api), new_key(api)
    time.sleep(1)  # the address's window is empty
    names = []
    with (
        limited.client(api_key=in_use) as working,
        limited.client(api_key="re_guessed_key") as guessing,
    ):
        assert working.get("/automations").status_code == 200  # verified, so remembered
        for _ in range(LIMIT + 3):
            names.append(guessing.get("/automations").json()["name"])
        assert names[:LIMIT] == ["invalid_api_key"] * LIMIT
        assert set(names[LIMIT:]) == {"rate_limit_exceeded"}
        # A key in use from the same address goes on working, on its own allowance.
        assert working.get("/automations").status_code == 200
    with limited.client(api_key=None) as anonymous:
        answer = anonymous.get("/automations")
    assert answer.status_code == 429 and "retry-after" in answer.headers
    # Meanwhile a right guess is not even looked up: it cannot be told from a wrong one.
    with limited.client(api_key=guessed_right) as lucky:
        blocked = lucky.get("/automations")
        assert blocked.status_code == 429
        time.sleep(int(blocked.headers["retry-after"]))
        assert lucky.get("/automations").status_code == 200


def test_failed_dashboard_sign_ins_are_limited_by_address(limited: ApiServer) -> None:
    time.sleep(1)  # the address's window is empty
    with httpx.Client(base_url=limited.base_url, timeout=10) as browser:
        form = browser.get("/dashboard/login").text
        csrf = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]

        def sign_in(key: str) -> httpx.Response:
            return browser.post("/dashboard/login", data={"csrf_token": csrf, "api_key": key})

        statuses = [sign_in("re_guessed_key").status_code for _ in range(LIMIT + 1)]
        assert statuses == [401] * LIMIT + [429]
        blocked = sign_in(API_KEY)
        assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text
        time.sleep(int(blocked.headers["retry-after"]))
        assert sign_in(API_KEY).status_code == 303


def test_a_request_refused_429_runs_once_retry_after_has_passed(
    api: httpx.Client, limited: ApiServer, rt_stack: Stack
) -> None:
    body = {"event": "user.created", "email": "patient@example.test"}
    headers = {"Idempotency-Key": "after-the-wait"}
    with limited.client(api_key=new_key(api)) as client:
        for _ in range(LIMIT):
            assert client.get("/automations").status_code == 200
        refused = client.post("/events/send", json=body, headers=headers)
        assert refused.status_code == 429
        assert count(rt_stack, IdempotencyRecord) == 0
        time.sleep(int(refused.headers["retry-after"]))
        accepted = client.post("/events/send", json=body, headers=headers)
        assert accepted.status_code == 202, accepted.text
        assert "idempotent-replayed" not in accepted.headers
        replayed = client.post("/events/send", json=body, headers=headers)
        assert replayed.status_code == 202 and replayed.headers["idempotent-replayed"] == "true"
    assert count(rt_stack, Event) == 1


def chunked(data: bytes, size: int = 16 * 1024) -> Iterator[bytes]:
    """A body httpx sends with `Transfer-Encoding: chunked` and no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_chunked_body_over_the_limit_is_413(api: httpx.Client, rt_stack: Stack) -> None:
    limit = rt_stack.settings.max_body_bytes
    big = b'{"event": "big", "email": "a@b.test", "payload": {"blob": "' + b"x" * limit + b'"}}'
    request = api.build_request(
        "POST", "/events/send", content=chunked(big), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    answer = api.send(request)
    assert answer.status_code == 413
    assert answer.json() == {
        "statusCode": 413,
        "name": "request_too_large",
        "message": f"The request body is larger than {limit} bytes",
    }
    small = b'{"event": "small", "email": "chunked@example.test"}'
    request = api.build_request(
        "POST",
        "/events/send",
        content=chunked(small, 8),
        headers={"content-type": "application/json"},
    )
    assert api.send(request).status_code == 202
    assert count(rt_stack, Event) == 1
