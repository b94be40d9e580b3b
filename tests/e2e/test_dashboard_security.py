"""The dashboard's guards in headless Chromium: CSRF tokens, sign-out, keys that end sessions."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import screenshot, sign_in
from tests.e2e.test_dashboard import create_automation
from tests.integration.harness import API_KEY, ApiServer, Stack
from web.session import COOKIE

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)


def test_forms_need_the_csrf_token_and_sign_out_ends_the_session(
    page: Any, api: httpx.Client, rt_stack: Stack
) -> None:
    automation_id = create_automation(api, rt_stack)
    sign_in(page)
    # A form posted without the token, as a forged page would, with the session cookie.
    page.evaluate(
        """(action) => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = action;
            const field = document.createElement("input");
            field.name = "status";
            field.value = "disabled";
            form.appendChild(field);
            document.body.appendChild(form);
            form.submit();
        }""",
        f"/dashboard/automations/{automation_id}/status",
    )
    page.wait_for_selector("h1:text('Form refused')")
    assert "CSRF token" in page.inner_text(".problem-text")
    screenshot(page, "error-csrf-refused")
    assert api.get(f"/automations/{automation_id}").json()["status"] == "enabled"
    answer = page.request.post(
        f"/dashboard/automations/{automation_id}/stop",
        form={"csrf_token": "forged", "cancel_runs": "yes"},
    )
    assert answer.status == 403
    assert api.get(f"/automations/{automation_id}").json()["status"] == "enabled"

    page.goto(f"/dashboard/automations/{uuid.uuid4()}")
    assert page.locator("h1").inner_text() == "Not found"
    assert "Automation not found" in page.inner_text(".problem-text")
    screenshot(page, "error-not-found")

    page.goto("/dashboard/")
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/dashboard/login"))
    assert "signed out" in page.inner_text(".notice")
    page.goto(f"/dashboard/automations/{automation_id}")
    assert "/dashboard/login" in page.url


def test_a_session_ends_with_its_key(page: Any, api: httpx.Client, rt_stack: Stack) -> None:
    sending = api.post("/api-keys", json={"name": "mailer", "permission": "sending_access"})
    sign_in_form = page.goto("/dashboard/login")
    assert sign_in_form is not None and sign_in_form.status == 200
    page.fill("#api_key", sending.json()["token"])
    page.click("button[type=submit]")
    assert "sending access" in page.inner_text(".error")

    created = api.post("/api-keys", json={"name": "operator"}).json()
    sign_in(page, created["token"])
    assert api.delete(f"/api-keys/{created['id']}").status_code == 200
    page.goto("/dashboard/")
    assert "/dashboard/login" in page.url
    sign_in(page, API_KEY)


def test_a_cookie_copied_before_sign_out_is_refused_after_it(
    page: Any, api: httpx.Client, api_server: ApiServer, rt_stack: Stack
) -> None:
    automation_id = create_automation(api, rt_stack)
    sign_in(page)
    page.goto(f"/dashboard/automations/{automation_id}")
    copied = {c["name"]: c["value"] for c in page.context.cookies()}
    csrf = page.get_attribute("input[name=csrf_token]", "value")
    assert COOKIE in copied and csrf

    def with_the_copy() -> httpx.Client:
        return httpx.Client(
            base_url=api_server.base_url, cookies={COOKIE: copied[COOKIE]}, timeout=10
        )

    with with_the_copy() as copy:
        assert copy.get("/dashboard/").status_code == 200

    page.goto("/dashboard/")
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/dashboard/login"))

    with with_the_copy() as copy:
        answer = copy.get("/dashboard/")
        assert answer.status_code == 303
        assert "/dashboard/login" in answer.headers["location"]
        # Nor does a form posted with the copy and its (valid) CSRF token do anything.
        stop = copy.post(
            f"/dashboard/automations/{automation_id}/stop",
            data={"csrf_token": csrf, "cancel_runs": "yes"},
        )
        assert stop.status_code == 303 and "/dashboard/login" in stop.headers["location"]
    assert api.get(f"/automations/{automation_id}").json()["status"] == "enabled"
    # Signing in again opens a new session.
    sign_in(page)
    assert page.locator("h1").inner_text() == "Automations"
