"""The dashboard in headless Chromium against a live API server, worker and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import httpx
import pytest

from bench.dashboard_data import insert_history
from tests.e2e.conftest import Watch, screenshot, sign_in
from tests.integration.factories import make_contact, make_domain, make_template, unique_email
from tests.integration.harness import Stack
from tests.patience import patience

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

XSS = "<script>alert(1)</script>"
NAME = "Onboarding <em>v2</em>"


def create_automation(api: httpx.Client, stack: Stack) -> str:
    """kind=wait sits in a 1-hour delay; kind=now sends a welcome email; no kind fails `check`."""
    make_domain(stack)
    template_id = make_template(stack)
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {
            "key": "check",
            "type": "condition",
            "config": {"rule": {"field": "event.kind", "operator": "eq", "value": "wait"}},
        },
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        {"key": "after", "type": "contact_update", "config": {"first_name": "After"}},
        {
            "key": "welcome",
            "type": "send_email",
            "config": {"template": {"id": template_id}},
        },
    ]
    connections = [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "pause", "type": "condition_met"},
        {"from": "check", "to": "welcome", "type": "condition_not_met"},
        {"from": "pause", "to": "after"},
    ]
    body = {"name": NAME, "status": "enabled", "steps": steps, "connections": connections}
    answer = api.post("/automations", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def send(api: httpx.Client, email: str, **payload: Any) -> None:
    body = {"event": "user.created", "email": email, "payload": payload}
    assert api.post("/events/send", json=body).status_code == 202


def runs(api: httpx.Client, automation_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/automations/{automation_id}/runs").json()["data"])


def settle(api: httpx.Client, stack: Stack, automation_id: str, **expected: int) -> None:
    """Wait until the runs have these statuses; waiting runs also sit in their delay."""

    def done() -> bool:
        found = runs(api, automation_id)
        counts = {status: sum(r["status"] == status for r in found) for status in expected}
        return counts == expected and len(found) == sum(expected.values())

    stack.wait_for(done, what=f"runs {expected}")
    for run in runs(api, automation_id):
        if run["status"] == "running":
            stack.wait_step(uuid.UUID(run["id"]), "pause", "waiting")


def step_keys(page: Any) -> list[str]:
    return list(page.locator(".tl-item").evaluate_all("items => items.map(i => i.dataset.step)"))


def mixed_runs(api: httpx.Client, stack: Stack) -> str:
    """One completed, one failed, one skipped (unsubscribed) and one waiting run."""
    automation_id = create_automation(api, stack)
    gone = unique_email("gone")
    make_contact(stack, gone, unsubscribed=True)
    make_contact(stack, "xss@example.test", first_name=XSS, last_name="O'Brien & Co")
    send(api, unique_email("done"), kind="now")
    send(api, unique_email("broken"), note="<img src=x onerror=alert(2)>")
    send(api, gone, kind="now")
    send(api, "xss@example.test", kind="wait")
    settle(api, stack, automation_id, completed=1, failed=1, skipped=1, running=1)
    return automation_id


def test_sign_in_list_graph_and_escaping(page: Any, api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = mixed_runs(api, rt_stack)
    page.goto("/dashboard/")
    assert "/dashboard/login" in page.url
    page.fill("#api_key", "re_not_a_key")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text(".error")
    screenshot(page, "sign-in")
    sign_in(page)

    row = page.locator(f"tr[data-automation='{automation_id}']")
    assert row.locator("a.strong").inner_text() == NAME
    assert row.locator(".badge").inner_text() == "Enabled"
    assert "user.created" in row.inner_text()
    counts = row.locator(".counts").inner_text()
    for text in ("1 running", "1 completed", "1 failed", "1 skipped"):
        assert text in counts
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row.locator("time").inner_text())
    screenshot(page, "automations")

    row.locator("a.strong").click()
    page.wait_for_selector("svg.graph")
    assert page.locator("svg.graph g.step").count() == 5
    labels = page.locator("svg.graph .edge-label text").all_text_contents()
    assert sorted(labels) == ["condition met", "not met"]
    check = page.locator("tr[data-step='check']").inner_text().split()
    assert check[-4:] == ["4", "3", "1", "0"]  # reached, completed, failed, skipped
    welcome = page.locator("svg.graph g[data-step='welcome']").text_content() or ""
    assert (
        "2 reached" in welcome and "1 ok · 0 failed · 2 skipped" in welcome
    )  # one unsubscribed, one branch not taken
    screenshot(page, "automation-graph")

    page.click("nav.tabs >> text=Runs")
    xss_row = page.locator("tr", has_text="xss@example.test")
    assert XSS in xss_row.locator("td.contact").inner_text()
    assert "O'Brien & Co" in xss_row.locator("td.contact").inner_text()
    assert page.locator("td.contact script").count() == 0
    # The live duration of the running run ticks in the browser.
    live = page.locator("[data-live-since]").first
    before = live.inner_text()
    page.wait_for_function(
        "([el, text]) => el.textContent !== text", arg=[live.element_handle(), before]
    )


def test_enable_and_disable_from_the_list(page: Any, api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = create_automation(api, rt_stack)
    sign_in(page)
    row = page.locator(f"tr[data-automation='{automation_id}']")
    row.locator("button", has_text="Disable").click()
    assert "no new runs start" in page.inner_text(".notice")
    assert row.locator(".badge").inner_text() == "Disabled"
    assert api.get(f"/automations/{automation_id}").json()["status"] == "disabled"
    row.locator("button", has_text="Enable").click()
    assert row.locator(".badge").inner_text() == "Enabled"
    assert api.get(f"/automations/{automation_id}").json()["status"] == "enabled"


def test_filter_failed_and_read_the_error(page: Any, api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = mixed_runs(api, rt_stack)
    sign_in(page)
    page.goto(f"/dashboard/automations/{automation_id}/runs")
    assert page.locator("table.runs tbody tr").count() == 4
    page.check("input[name=status][value=failed]")
    page.click(".filters button[type=submit]")
    page.wait_for_url(re.compile(r"status=failed"))
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-status") == "failed"
    screenshot(page, "runs-filtered-failed")

    page.check("input[name=status][value=skipped]")
    page.click(".filters button[type=submit]")
    page.wait_for_url(re.compile(r"status=failed&status=skipped"))
    assert sorted(r.get_attribute("data-status") for r in rows.all()) == ["failed", "skipped"]

    page.goto(f"/dashboard/automations/{automation_id}/runs?status=failed")
    rows.first.locator("a").first.click()
    page.wait_for_selector(".timeline")
    assert step_keys(page) == ["start", "check"]
    failed = page.locator(".tl-item[data-step='check']")
    assert failed.locator(".badge").inner_text() == "Failed"
    assert failed.locator("details").get_attribute("open") is not None
    assert "Failed at step check" in page.inner_text(".failed-at")
    message = failed.locator(".error-message").inner_text()
    assert "event.kind" in message
    assert '"message"' in failed.locator("pre.error-json").inner_text()
    payload = page.locator("pre.event-payload").inner_text()
    assert "<img src=x onerror=alert(2)>" in payload
    assert page.locator("pre.event-payload img").count() == 0
    screenshot(page, "run-failed-step")

    page.goto(f"/dashboard/automations/{automation_id}/runs?status=completed")
    rows.first.locator("a").first.click()
    page.wait_for_selector(".timeline")
    assert step_keys(page) == ["start", "check", "pause", "welcome", "after"]
    welcome = page.locator(".tl-item[data-step='welcome']")
    assert welcome.locator("details").get_attribute("open") is None
    welcome.locator("summary").click()
    assert '"email_id"' in welcome.locator("pre.json").inner_text()


def test_stop_keeps_the_run_in_flight(
    page: Any, api: httpx.Client, rt_stack: Stack, watch: Watch
) -> None:
    automation_id = create_automation(api, rt_stack)
    send(api, unique_email("slow"), kind="wait")
    settle(api, rt_stack, automation_id, running=1)
    sign_in(page)
    page.goto(f"/dashboard/automations/{automation_id}")
    page.click("#stop-panel summary")
    panel = page.locator("#stop-panel .panel")
    assert "1 run in flight" in panel.inner_text()
    assert "goes on to completion" in panel.inner_text()
    assert panel.locator("input[name=cancel_runs]").count() == 1
    screenshot(page, "stop-confirmation")
    panel.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"notice=stopped$"))
    assert page.locator("#automation-status .badge").inner_text() == "Disabled"
    assert api.get(f"/automations/{automation_id}").json()["status"] == "disabled"

    page.click("nav.tabs >> text=Runs")
    row = page.locator("table.runs tbody tr")
    assert row.get_attribute("data-status") == "running"
    rt_stack.advance(dt.timedelta(hours=1, seconds=1))
    # The open page refreshes itself: the run finishes although the automation is stopped.
    page.wait_for_selector("table.runs tbody tr[data-status='completed']", timeout=patience(30_000))
    send(api, unique_email("late"), kind="now")
    assert len(runs(api, automation_id)) == 1


def test_cancel_a_waiting_run(page: Any, api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = create_automation(api, rt_stack)
    send(api, unique_email("waiting"), kind="wait")
    settle(api, rt_stack, automation_id, running=1)
    (run,) = runs(api, automation_id)
    sign_in(page)
    page.goto(f"/dashboard/automations/{automation_id}/runs/{run['id']}")
    assert page.locator(".tl-item[data-step='pause'] .badge").inner_text() == "Waiting"
    page.click("#cancel-panel summary")
    page.click("#cancel-panel button[type=submit]")
    page.wait_for_url(re.compile(r"notice=cancelled$"))
    assert page.locator("#run-status .badge").inner_text() == "Cancelled"
    assert page.locator(".tl-item[data-step='pause'] .badge").inner_text() == "Cancelled"
    assert page.locator("#cancel-panel").count() == 0
    assert rt_stack.run(uuid.UUID(run["id"])).status == "cancelled"


def test_metrics_charts_are_drawn(page: Any, api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = mixed_runs(api, rt_stack)
    sign_in(page)
    page.goto(f"/dashboard/automations/{automation_id}/metrics")
    for chart in ("started", "finished", "durations", "emails", "funnel"):
        svg = page.locator(f"#chart-{chart} svg")
        assert svg.count() == 1
        assert svg.locator("rect[class^='s-']").count() > 0, chart
    tiles = page.locator(".tiles").inner_text()
    assert "4\nruns started" in tiles and "1\nfailed" in tiles
    assert "sent" in page.locator("#chart-emails").inner_text()
    screenshot(page, "metrics")

    page.select_option("select[name=granularity]", "hour")
    page.click(".range button[type=submit]")
    page.wait_for_url(re.compile(r"granularity=hour"))
    assert page.locator("#chart-started svg rect[class^='s-']").count() > 0
    page.goto(f"/dashboard/automations/{automation_id}/metrics?start=2026-02-30")
    assert "Dates must be written like" in page.inner_text(".error")


def test_runs_page_by_page_newest_first(page: Any, rt_stack: Stack) -> None:
    sample = insert_history(
        rt_stack.runtime.sessions.kw["bind"], 200, rt_stack.clock.now(), contacts=50
    )
    sign_in(page)
    page.goto(f"/dashboard/automations/{sample['busiest']}/runs")
    rows = page.locator("table.runs tbody tr")

    def shown() -> list[tuple[str, str]]:
        return [
            (r.get_attribute("data-run") or "", r.locator("time").get_attribute("datetime") or "")
            for r in rows.all()
        ]

    first = shown()
    assert len(first) == 25 and [t for _, t in first] == sorted((t for _, t in first), reverse=True)
    assert page.locator(".pager .disabled", has_text="Newer").count() == 1
    with page.expect_navigation():  # rows read before the next page loaded would be none
        page.click(".pager a[rel=next]")
    second = shown()
    assert len(second) == 25 and second[0][1] <= first[-1][1]
    assert not {i for i, _ in first} & {i for i, _ in second}
    with page.expect_navigation():
        page.click(".pager a[rel=prev]")
    assert shown() == first
