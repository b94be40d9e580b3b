"""/metrics and the API docs: open by default, behind their own tokens when set, and the docs
switched off entirely by AUTOMATIONS_DOCS_ENABLED=false."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.harness import API_KEY, ApiServer, Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

METRICS_TOKEN = "metrics-token-for-the-prometheus-scraper"
DOCS_TOKEN = "docs-token-for-the-developers-of-clients"
DOCS = ("/docs", "/openapi.json", "/docs/vendor/swagger-ui.css")


@pytest.fixture(scope="module")
def guarded(stack: Stack) -> Iterator[ApiServer]:
    server = ApiServer(stack)
    server.start(AUTOMATIONS_METRICS_TOKEN=METRICS_TOKEN, AUTOMATIONS_DOCS_TOKEN=DOCS_TOKEN)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def behind_a_prefix(stack: Stack) -> Iterator[ApiServer]:
    server = ApiServer(stack, root_path="/automations")
    server.start(AUTOMATIONS_METRICS_TOKEN=METRICS_TOKEN, AUTOMATIONS_DOCS_TOKEN=DOCS_TOKEN)
    yield server
    server.stop()


def get(server: ApiServer, path: str, **options: object) -> httpx.Response:
    return httpx.get(server.base_url + path, timeout=10, **options)  # type: ignore[arg-type]


def test_open_by_default(api_server: ApiServer) -> None:
    for path in ("/metrics", *DOCS):
        assert get(api_server, path).status_code == 200, path


def test_metrics_need_their_bearer_token(guarded: ApiServer) -> None:
    missing = get(guarded, "/metrics")
    assert missing.status_code == 401
    assert missing.json()["name"] == "missing_api_key"
    assert "AUTOMATIONS_METRICS_TOKEN" in missing.json()["message"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for wrong in ("nope", API_KEY, DOCS_TOKEN):
        answer = get(guarded, "/metrics", headers={"Authorization": f"Bearer {wrong}"})
        assert answer.status_code == 401 and answer.json()["name"] == "invalid_api_key"
    scraped = get(guarded, "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200 and "automations_runs" in scraped.text
    assert get(guarded, "/health").status_code == 200


def test_docs_need_their_token_as_bearer_or_basic_password(guarded: ApiServer) -> None:
    for path in DOCS:
        refused = get(guarded, path)
        assert refused.status_code == 401, path
        # A browser asks for a user name and password on this challenge.
        assert refused.headers["www-authenticate"].startswith("Basic"), path
        wrong = get(guarded, path, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert wrong.status_code == 401, path
        bearer = get(guarded, path, headers={"Authorization": f"Bearer {DOCS_TOKEN}"})
        assert bearer.status_code == 200, path
        assert get(guarded, path, auth=("anyone", DOCS_TOKEN)).status_code == 200, path
        assert get(guarded, path, auth=("anyone", "guess")).status_code == 401, path


def test_docs_can_be_switched_off(stack: Stack) -> None:
    server = ApiServer(stack)
    server.start(AUTOMATIONS_DOCS_ENABLED="false")
    try:
        for path in DOCS:
            assert get(server, path).status_code == 404, path
        assert get(server, "/health").status_code == 200
    finally:
        server.stop()


def test_the_tokens_hold_behind_a_path_prefix(behind_a_prefix: ApiServer) -> None:
    """With uvicorn's --root-path, the request's path holds the prefix: the guard compared it
    with `/metrics` and let every request through, tokens or not."""
    for path in ("/metrics", *DOCS):
        assert get(behind_a_prefix, path).status_code == 401, path
    scraped = get(behind_a_prefix, "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200 and "automations_runs" in scraped.text
    docs = get(behind_a_prefix, "/openapi.json", auth=("any", DOCS_TOKEN))
    assert docs.status_code == 200
    assert get(behind_a_prefix, "/health").status_code == 200
