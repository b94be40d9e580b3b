"""/docs in headless Chromium with every other origin blocked, under the pages' CSP of 'self'."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.harness import API_KEY, ApiServer
from web.render import CSP

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

# Every violation the page meets, whatever the console says about it.
RECORD_VIOLATIONS = """
window.violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def offline(page: Any, base_url: str) -> list[str]:
    """Refuse every request to another origin (recorded); serve /docs under the strict CSP."""
    outside: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        if not url.startswith(base_url + "/"):
            outside.append(url)
            route.abort()
        elif url.split("?")[0] == f"{base_url}/docs":
            answer = route.fetch()
            headers = {**answer.headers, "content-security-policy": CSP}
            route.fulfill(response=answer, headers=headers)
        else:
            route.continue_()

    page.route("**/*", handle)
    page.add_init_script(RECORD_VIOLATIONS)
    return outside


def operation_count(openapi: dict[str, Any]) -> int:
    return sum(len(methods) for methods in openapi["paths"].values())


def test_docs_list_every_operation_offline_and_try_one_with_a_key(
    page: Any, api: httpx.Client, api_server: ApiServer
) -> None:
    outside = offline(page, api_server.base_url)
    openapi = api.get("/openapi.json").json()

    page.goto("/docs")
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() == operation_count(openapi)
    assert page.locator(".opblock-summary-description", has_text="Create an automation").count()
    assert page.locator("section.models").get_by_text("RunList", exact=True).count() == 1

    page.click("button.authorize")
    page.fill(".modal-ux input", API_KEY)
    page.click(".modal-ux .auth-btn-wrapper button.authorize")
    page.click(".modal-ux button.btn-done")
    listing = page.locator("#operations-automations-list_automations_automations_get")
    listing.locator(".opblock-summary").click()
    listing.locator("button.try-out__btn").click()
    listing.locator("button.execute").click()
    answer = listing.locator(".live-responses-table tbody .response").first
    status = answer.locator(".response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"
    assert '"object": "list"' in answer.locator(".response-col_description pre").first.inner_text()

    assert page.evaluate("window.violations") == []
    assert outside == []


def test_docs_page_loads_only_its_own_files(api_server: ApiServer) -> None:
    """No inline script, no other origin: what `script-src 'self'` and an offline box need."""
    page = httpx.get(f"{api_server.base_url}/docs", timeout=10)
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "http" not in page.text
    for asset in ("/docs/vendor/swagger-ui-bundle.js", "/docs/vendor/swagger-ui.css"):
        assert httpx.get(f"{api_server.base_url}{asset}", timeout=10).status_code == 200
    assert httpx.get(f"{api_server.base_url}/docs/static/swagger-init.js").status_code == 200
