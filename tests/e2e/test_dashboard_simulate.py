"""The Simulate tab in headless Chromium: the form, the timeline, emails in a sandboxed frame."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import VIEWPORT, Watch, screenshot, sign_in
from tests.integration.factories import make_contact, make_domain, make_template
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

XSS = "<img src=x onerror=alert(1)>"
# An email that tries to run code: the frame is sandboxed without scripts, so it cannot.
EMAIL_HTML = (
    '<div style="font-family: Georgia; color: rgb(79, 70, 229)"><p>Hi {{{FIRST_NAME}}},'
    " you are on the {{{PLAN}}} plan.</p></div><script>alert('from the email')</script>"
    '<a href="{{{RESEND_UNSUBSCRIBE_URL}}}">Unsubscribe</a>'
)


def automation(api: httpx.Client, stack: Stack) -> str:
    make_domain(stack)
    template_id = make_template(stack, html=EMAIL_HTML)
    variables = {"FIRST_NAME": {"var": "contact.first_name"}, "PLAN": {"var": "event.plan"}}
    send = {"template": {"id": template_id, "variables": variables}}
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {"key": "welcome", "type": "send_email", "config": send},
        {
            "key": "await_payment",
            "type": "wait_for_event",
            "config": {"event_name": "user.paid", "timeout": "3 days"},
        },
        {"key": "thanks", "type": "contact_update", "config": {"properties": {"paid": True}}},
        {"key": "nudge", "type": "send_email", "config": send},
    ]
    connections = [
        {"from": "start", "to": "welcome"},
        {"from": "welcome", "to": "await_payment"},
        {"from": "await_payment", "to": "thanks", "type": "event_received"},
        {"from": "await_payment", "to": "nudge", "type": "timeout"},
    ]
    body = {"name": "Trial", "status": "disabled", "steps": steps, "connections": connections}
    answer = api.post("/automations", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_simulate_a_contact_and_read_the_emails(
    page: Any, api: httpx.Client, rt_stack: Stack, watch: Watch
) -> None:
    automation_id = automation(api, rt_stack)
    make_contact(rt_stack, "stored@example.test", first_name=XSS)
    sign_in(page)
    page.goto(f"/dashboard/automations/{automation_id}")
    page.click("nav.tabs >> text=Simulate")
    page.wait_for_selector("#simulate-form")

    page.fill("#sim-contact", "ada@example.test")
    page.fill("input[name=first_name]", "Ada")
    page.fill("#sim-payload", '{"plan": "pro"}')
    page.fill("#sim-then", "user.paid after 5 days\n")
    page.click("#simulate-form button[type=submit]")
    page.wait_for_selector("#simulation")

    heading = page.inner_text("#simulation-title")
    assert "Completed" in heading and "after 3 days" in heading and "2 emails" in heading
    keys = page.locator(".sim-timeline .tl-item").evaluate_all(
        "items => items.map(i => i.dataset.step || ('event ' + i.dataset.event))"
    )
    assert keys == ["start", "welcome", "await_payment", "thanks", "nudge", "event user.paid"]
    assert "no wait resumed" in page.inner_text(".tl-event")
    assert page.inner_text(".tl-item[data-step='nudge'] .tl-time") == "+3 days"
    email = page.locator("#email-welcome")
    assert "Welcome, Ada!" in email.locator("h3").inner_text()
    assert "List-Unsubscribe" in email.inner_text()
    frame = email.locator("iframe.email-frame")
    assert frame.get_attribute("sandbox") == ""
    body = page.frame_locator("#email-welcome iframe").locator("p")
    assert body.inner_text() == "Hi Ada, you are on the pro plan."
    # The email's own inline style applies inside the frame.
    colour = body.evaluate("p => getComputedStyle(p.parentElement).color")
    assert colour == "rgb(79, 70, 229)"
    # Headless Chromium paints only the frames on screen: the whole page is, for the picture.
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({**VIEWPORT, "height": height})
    page.wait_for_timeout(300)
    screenshot(page, "simulate")
    page.set_viewport_size(VIEWPORT)

    # A stored contact, picked by its email: its name is escaped everywhere it appears.
    page.fill("#sim-contact", "stored@example.test")
    page.fill("input[name=first_name]", "")
    page.fill("#sim-then", "user.paid after 1 day")
    page.click("#simulate-form button[type=submit]")
    page.wait_for_selector("#simulation")
    assert page.locator(".sim-email").count() == 1
    assert XSS in page.locator("#email-welcome h3").inner_text()
    assert "resumed await_payment" in page.inner_text(".tl-event")
    inner = page.frame_locator("#email-welcome iframe").locator("p")
    assert XSS in inner.inner_text()
    assert page.frame_locator("#email-welcome iframe").locator("img").count() == 0

    # Nothing was stored: no run, and the stored contact is as it was.
    assert api.get(f"/automations/{automation_id}/runs").json()["data"] == []
    stored = api.get("/contacts/stored@example.test").json()
    assert stored["first_name"] == XSS and stored.get("properties") in ({}, None)
    # Chromium reports the email's script it refused to run: the sandbox at work.
    blocked = [e for e in watch.errors if "sandboxed" in e and "allow-scripts" in e]
    assert blocked
    watch.errors[:] = [e for e in watch.errors if e not in blocked]


def test_bad_input_is_shown_above_the_form(page: Any, api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = automation(api, rt_stack)
    sign_in(page)
    page.goto(f"/dashboard/automations/{automation_id}/simulate")
    page.fill("#sim-contact", "ada@example.test")
    page.fill("#sim-then", "user.paid after 2 days\nuser.paid in a while")
    page.click("#simulate-form button[type=submit]")
    error = page.wait_for_selector("#simulate-error")
    assert error.inner_text().startswith("Later events, line 2: write `NAME after DURATION")
    assert page.input_value("#sim-then") == "user.paid after 2 days\nuser.paid in a while"
    assert page.locator("#simulation").count() == 0
    screenshot(page, "simulate-error")

    # The form follows the dashboard's rules: without this session's CSRF token, refused.
    forged = {"csrf_token": "forged", "contact": "ada@example.test", "payload": "{}"}
    answer = page.request.post(f"/dashboard/automations/{automation_id}/simulate", form=forged)
    assert answer.status == 403 and "Form refused" in answer.text()
    page.goto(f"/dashboard/automations/{uuid.uuid4()}/simulate")
    assert page.locator("h1").inner_text() == "Not found"
