"""Recovering failed runs from the dashboard in headless Chromium: retry, replay and resume a run
from its page, and retry or replay the failed runs in bulk from the Runs tab, with a live API
server, a Celery worker, PostgreSQL and an SMTP sink."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import screenshot, sign_in
from tests.integration.factories import (
    chain,
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack
from tests.patience import patience

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
TAG = {"key": "tag", "type": "contact_update", "config": {"first_name": "Tagged"}}
CHECK = {
    "key": "check",
    "type": "condition",
    "config": {"rule": {"field": "event.plan", "operator": "eq", "value": "pro"}},
}
# An event without `plan` fails the condition: the field is missing.
CHECKED = [
    {"from": "start", "to": "check"},
    {"from": "check", "to": "welcome", "type": "condition_met"},
]


def send(api: httpx.Client, email: str, **payload: Any) -> None:
    body = {"event": "user.created", "email": email, "payload": payload}
    answer = api.post("/events/send", json=body)
    assert answer.status_code == 202, answer.text


def runs(api: httpx.Client, automation_id: object) -> list[dict[str, Any]]:
    answer = api.get(f"/automations/{automation_id}/runs")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def wait_statuses(api: httpx.Client, stack: Stack, automation_id: object, **expected: int) -> None:
    def reached() -> bool:
        found = [run["status"] for run in runs(api, automation_id)]
        return {s: found.count(s) for s in expected} == expected and len(found) == sum(
            expected.values()
        )

    stack.wait_for(reached, timeout=60, what=f"runs {expected}")


def verify(api: httpx.Client, name: str = "acme.test") -> None:
    """Verify the sender domain through the API, as an operator does after fixing DNS."""
    (domain,) = [d for d in api.get("/domains").json()["data"] if d["name"] == name]
    assert api.post(f"/domains/{domain['id']}/verify").status_code == 200


def unverified_sender(stack: Stack) -> uuid.UUID:
    """start → tag (a contact update) → hello (an email from a domain not verified yet)."""
    make_domain(stack, verified=False)
    steps = [TRIGGER, TAG, send_email_step("hello", make_template(stack))]
    return make_automation(stack, steps, chain("start", "tag", "hello"))


def drop_the_condition(api: httpx.Client, automation_id: object, template_id: str) -> None:
    """The fix: a new version without the condition (steps are edited while disabled)."""
    path = f"/automations/{automation_id}"
    assert api.patch(path, json={"status": "disabled"}).status_code == 200
    fixed = {"steps": [TRIGGER, send_email_step("welcome", template_id)]}
    patched = api.patch(path, json={**fixed, "connections": chain("start", "welcome")})
    assert patched.status_code == 200, patched.text
    assert api.patch(path, json={"status": "enabled"}).status_code == 200


def attempts(page: Any, step: str) -> list[tuple[str, str]]:
    """The step's attempt history as the page shows it: (status, error text) per try."""
    rows = page.locator(f".tl-item[data-step='{step}'] table.attempts tbody tr")
    return [
        (row.get_attribute("data-status") or "", row.locator(".attempt-error").inner_text())
        for row in rows.all()
    ]


def run_status(page: Any) -> str:
    return str(page.locator("#run-status .badge").inner_text())


def wait_run_status(page: Any, label: str) -> None:
    """The run page refreshes itself while the run is running."""
    page.wait_for_selector(f"#run-status .badge:text-is('{label}')", timeout=patience(30_000))


def test_retry_a_failed_run_until_the_sender_is_verified(
    page: Any, api: httpx.Client, rt_stack: Stack
) -> None:
    automation_id = unverified_sender(rt_stack)
    email = unique_email("sender")
    send(api, email)
    wait_statuses(api, rt_stack, automation_id, failed=1)
    (run,) = runs(api, automation_id)
    run_url = f"/dashboard/automations/{automation_id}/runs/{run['id']}"
    sign_in(page)
    page.goto(run_url)
    assert "Failed at step hello" in page.inner_text(".failed-at")
    ((status, error),) = attempts(page, "hello")
    assert status == "failed" and "domain_not_verified" in error and "acme.test" in error
    assert page.locator("#replayed-by, #replay-of, #run-retries").count() == 0

    page.click("#retry-panel summary")
    panel = page.locator("#retry-panel .panel")
    text = panel.inner_text()
    assert "goes on from step hello with the same version, event and contact" in text
    assert "steps that completed are not run again" in text
    assert "emails already sent are not sent again" in text
    screenshot(page, "run-retry-confirmation")
    # Opening the replay panel closes the retry one: they would overlap.
    page.click("#replay-panel summary")
    page.wait_for_function("() => !document.querySelector('#retry-panel').open")
    page.click("#retry-panel summary")

    # Retried before the domain is verified: it fails again, with a second try in the history.
    panel.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"notice=retried$"))
    assert "running again" in page.inner_text(".notice")
    wait_run_status(page, "Failed")
    assert [s for s, _ in attempts(page, "hello")] == ["failed", "failed"]
    assert "Retried 1 time" in page.inner_text("#run-retries")
    assert [s for s, _ in attempts(page, "tag")] == ["completed"]

    verify(api)
    page.click("#retry-panel summary")
    page.click("#retry-panel button[type=submit]")
    page.wait_for_url(re.compile(r"notice=retried$"))
    wait_run_status(page, "Completed")
    assert [s for s, _ in attempts(page, "hello")] == ["failed", "failed", "completed"]
    assert "Retried 2 times" in page.inner_text("#run-retries")
    assert page.locator("#retry-panel, #replay-panel").count() == 0
    assert len(rt_stack.sink.to(email)) == 1
    page.click(".tl-item[data-step='hello'] summary")
    history = page.locator(".tl-item[data-step='hello'] table.attempts")
    assert history.is_visible()
    assert "Sender domain `acme.test` is not verified" in history.inner_text()
    screenshot(page, "run-attempt-history")


def test_replay_lands_on_the_new_run_of_the_fixed_version(
    page: Any, api: httpx.Client, rt_stack: Stack
) -> None:
    make_domain(rt_stack)
    template_id = make_template(rt_stack)
    steps = [TRIGGER, CHECK, send_email_step("welcome", template_id)]
    automation_id = make_automation(rt_stack, steps, CHECKED)
    email = unique_email("replay")
    send(api, email)
    wait_statuses(api, rt_stack, automation_id, failed=1)
    (failed,) = runs(api, automation_id)
    drop_the_condition(api, automation_id, template_id)

    sign_in(page)
    page.goto(f"/dashboard/automations/{automation_id}/runs/{failed['id']}")
    page.click("#replay-panel summary")
    text = page.inner_text("#replay-panel .panel")
    assert "A new run of the automation's current version with the same event and contact" in text
    assert "emails of this run may be sent again by the new run" in text
    screenshot(page, "run-replay-confirmation")
    page.click("#replay-panel button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}\?notice=replayed$"))
    new_id = page.url.split("/runs/")[1].split("?")[0]
    assert new_id != failed["id"]
    assert "replays the earlier one" in page.inner_text(".notice")
    assert page.locator("#replay-of a").inner_text() == "…" + failed["id"][-8:]
    wait_run_status(page, "Completed")
    assert [s for s, _ in attempts(page, "welcome")] == ["completed"]
    assert page.locator(".tl-item[data-step='check']").count() == 0  # the new version's graph
    assert len(rt_stack.sink.to(email)) == 1

    page.click("#replay-of a")
    page.wait_for_url(re.compile(failed["id"]))
    assert run_status(page) == "Failed"
    assert page.locator("#replayed-by a").all_inner_texts() == ["…" + new_id[-8:]]
    page.click("#replay-panel summary")
    assert "already replayed 1 time" in page.inner_text("#replay-panel .panel")


def test_resume_a_cancelled_run_and_a_stale_form_says_why_not(
    page: Any, api: httpx.Client, rt_stack: Stack
) -> None:
    make_domain(rt_stack)
    steps = [
        TRIGGER,
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        send_email_step("hello", make_template(rt_stack)),
    ]
    automation_id = make_automation(rt_stack, steps, chain("start", "pause", "hello"))
    email = unique_email("resume")
    send(api, email)
    (run,) = runs(api, automation_id)
    run_id = uuid.UUID(run["id"])
    rt_stack.wait_step(run_id, "pause", "waiting")
    assert api.post(f"/automations/{automation_id}/runs/{run_id}/cancel").status_code == 200
    run_url = f"/dashboard/automations/{automation_id}/runs/{run_id}"
    sign_in(page)
    page.goto(run_url)
    stale = page.context.new_page()
    stale.goto(run_url)

    page.click("#retry-panel summary")
    assert page.inner_text("#retry-panel summary") == "Resume from the cancelled step…"
    assert "goes on from step pause" in page.inner_text("#retry-panel .panel")
    page.click("#retry-panel button[type=submit]")
    page.wait_for_url(re.compile(r"notice=resumed$"))
    rt_stack.wait_step(run_id, "pause", "waiting")
    page.reload()
    assert run_status(page) == "Running"
    assert [s for s, _ in attempts(page, "pause")] == ["cancelled", "waiting"]

    # The other tab still shows the cancelled run: its form is refused with the reason.
    stale.click("#retry-panel summary")
    stale.click("#retry-panel button[type=submit]")
    stale.wait_for_selector("h1:text('The run was not retried')")
    reason = stale.inner_text(".problem-text")
    assert "Run is running" in reason
    assert "Traceback" not in stale.content()
    stale.click(".problem-links a.button")
    stale.wait_for_url(re.compile(f"{run_id}$"))
    stale.close()

    rt_stack.advance(dt.timedelta(hours=1, seconds=1))
    wait_run_status(page, "Completed")
    assert len(rt_stack.sink.to(email)) == 1


def test_bulk_retry_from_the_runs_tab(page: Any, api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = unverified_sender(rt_stack)
    emails = [unique_email("bulk") for _ in range(6)]
    batch = [{"event": "user.created", "email": email} for email in emails]
    assert api.post("/events/batch", json=batch).status_code == 202
    wait_statuses(api, rt_stack, automation_id, failed=6)
    runs_url = f"/dashboard/automations/{automation_id}/runs"
    sign_in(page)

    page.goto(f"{runs_url}?status=completed")
    assert page.locator("#recover-bar").count() == 0  # the filter shows no failed run
    page.goto(f"{runs_url}?status=failed")
    assert page.inner_text("#bulk-retry") == "Retry 6 failed runs…"
    assert page.inner_text("#bulk-replay") == "Replay 6 failed runs…"
    screenshot(page, "runs-retry-failed")
    page.click("#bulk-retry")
    page.wait_for_url(re.compile(r"/runs/retry$"))
    confirm = page.locator("#bulk-confirm")
    assert confirm.locator("h2").inner_text() == "Retry 6 failed runs?"
    assert "emails already sent are not sent again" in confirm.inner_text()
    assert "dry run" in confirm.inner_text()
    options = page.locator("select[name=error_code] option").all_inner_texts()
    assert options == ["any error", "domain_not_verified (6)"]
    assert page.locator("table.sample tbody tr").count() == 6
    assert rt_stack.sink.to(emails[0]) == []  # a dry run changes nothing
    screenshot(page, "runs-bulk-retry")

    page.select_option("select[name=error_code]", "domain_not_verified")
    page.click("#bulk-confirm .filters button[type=submit]")
    page.wait_for_url(re.compile(r"error_code=domain_not_verified"))
    assert "whose error is domain_not_verified" in confirm.locator("h2").inner_text()

    verify(api)
    page.click(".confirm-bulk button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/retries/[0-9a-f-]{36}\?notice=bulk_started$"))
    progress_url = page.url.split("?")[0]
    assert page.inner_text("#bulk-matched .tile-value") == "6"
    page.wait_for_selector("#bulk[data-status='completed']", timeout=patience(30_000))
    assert page.inner_text("#bulk-done .tile-value") == "6"
    assert page.inner_text("#bulk-skipped .tile-value") == "0"
    assert page.inner_text("#bulk-pending .tile-value") == "0"
    assert page.locator("table.bulk-items tbody tr[data-status='done']").count() == 6
    screenshot(page, "runs-bulk-progress")

    wait_statuses(api, rt_stack, automation_id, completed=6)
    for email in emails:
        assert len(rt_stack.sink.to(email)) == 1, email
    page.goto(runs_url)
    assert page.locator("#recover-bar").count() == 0
    row = page.locator("table.bulks tbody tr")
    assert row.count() == 1 and row.get_attribute("data-status") == "completed"
    assert "domain_not_verified" in row.inner_text()
    row.locator("a", has_text="Progress").click()
    page.wait_for_url(progress_url)

    page.goto(f"/dashboard/automations/{automation_id}/metrics")
    assert page.inner_text("#tile-retried-runs .tile-value") == "6"
    assert page.inner_text("#tile-retries .tile-value") == "6"
    assert page.inner_text("#tile-replays .tile-value") == "0"


def test_bulk_replay_from_the_runs_tab(page: Any, api: httpx.Client, rt_stack: Stack) -> None:
    make_domain(rt_stack)
    template_id = make_template(rt_stack)
    automation_id = make_automation(
        rt_stack,
        [TRIGGER, CHECK, send_email_step("welcome", template_id)],
        CHECKED,
    )
    emails = [unique_email("again") for _ in range(3)]
    for email in emails:
        send(api, email)
    wait_statuses(api, rt_stack, automation_id, failed=3)
    drop_the_condition(api, automation_id, template_id)
    sign_in(page)
    page.goto(f"/dashboard/automations/{automation_id}/runs")
    page.click("#bulk-replay")
    page.wait_for_url(re.compile(r"/runs/replay$"))
    text = page.inner_text("#bulk-confirm")
    assert "Replay 3 failed runs on the current version?" in text
    assert "emails the failed runs already sent may be sent again" in text
    page.click(".confirm-bulk button[type=submit]")
    page.wait_for_url(re.compile(r"notice=bulk_started$"))
    page.wait_for_selector("#bulk[data-status='completed']", timeout=patience(30_000))
    assert page.inner_text("#bulk-done .tile-value") == "3"
    new_runs = page.locator("table.bulk-items tbody tr td:nth-child(3) a").all_inner_texts()
    assert len(new_runs) == 3

    wait_statuses(api, rt_stack, automation_id, completed=3, failed=3)
    for email in emails:
        assert len(rt_stack.sink.to(email)) == 1, email
    page.goto(f"/dashboard/automations/{automation_id}/runs?status=failed")
    # Replayed runs are left out of a second replay, and of a retry: their replays carry them on.
    assert page.locator("#bulk-replay").count() == 0
    assert page.locator("#bulk-retry").count() == 0
    page.goto(f"/dashboard/automations/{automation_id}/metrics")
    assert page.inner_text("#tile-replays .tile-value") == "3"
