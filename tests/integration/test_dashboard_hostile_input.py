"""The dashboard against hostile input, without a browser: every form it serves refuses a post
without the session's CSRF token, and markup stored in names, payloads and step errors is shown
as text on every page. (tests/e2e covers the same in a browser, when CI=true.)"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from tests.integration.factories import make_automation, make_domain, make_template
from tests.integration.harness import API_KEY, ApiServer, Stack
from wiring.server import create_server

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

HOSTILE = "\"'><script>alert(1)</script><img src=x onerror=alert(2)>"
RAW = ("<script>alert", "<img src=x")


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


@contextmanager
def signed_in(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        token = csrf_token(client.get("/dashboard/login").text)
        answer = client.post("/dashboard/login", data={"csrf_token": token, "api_key": API_KEY})
        assert answer.status_code == 303
        yield client


def dashboard_posts(stack: Stack) -> list[str]:
    """The path of every POST route of the mounted dashboard, included routers and all."""
    app = create_server(stack.settings, runtime=stack.runtime, dispatcher=stack.dispatcher)
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/dashboard")

    def walk(routes: list[Any], prefix: str) -> Iterator[str]:
        for route in routes:
            if hasattr(route, "original_router"):  # a router included lazily by FastAPI
                inner = prefix + route.include_context.prefix
                yield from walk(route.original_router.routes, inner)
            elif isinstance(route, Route) and "POST" in (route.methods or ()):
                yield prefix + route.path

    return list(walk(mount.routes, "/dashboard"))


def seed(api: httpx.Client, stack: Stack) -> tuple[str, list[uuid.UUID]]:
    """An automation named with markup, and two runs of it: one completed with a hostile
    payload, one failed on a step whose error names markup."""
    make_domain(stack)
    template = make_template(stack, subject="Hi {{{FIRST_NAME}}}", html="<p>{{{FIRST_NAME}}}</p>")
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "hostile"}},
        {
            "key": "check",
            "type": "condition",
            "config": {"type": "rule", "field": "event.a", "operator": "eq", "value": HOSTILE},
        },
        {
            "key": "mail",
            "type": "send_email",
            "config": {
                "template": {"id": template, "variables": {"FIRST_NAME": {"var": "event.a"}}}
            },
        },
        {"key": "broken", "type": "send_email", "config": {"template": {"alias": "x" + HOSTILE}}},
    ]
    connections = [
        {"from": "start", "to": "check", "type": "default"},
        {"from": "check", "to": "mail", "type": "condition_met"},
        {"from": "check", "to": "broken", "type": "condition_not_met"},
    ]
    created = api.post(
        "/automations",
        json={"name": HOSTILE, "status": "enabled", "steps": steps, "connections": connections},
    )
    assert created.status_code == 201, created.text
    runs = []
    for payload in ({"a": HOSTILE, HOSTILE: HOSTILE}, {"a": "other"}):
        for run_id in stack.send("hostile", "hostile@example.test", payload).run_ids:
            runs.append(run_id)
            stack.sweep_until_ended(run_id)
    assert {stack.run(run_id).status for run_id in runs} == {"completed", "failed"}
    return created.json()["id"], runs


def test_every_form_refuses_a_post_without_the_sessions_csrf_token(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack
) -> None:
    automation, runs = seed(api, rt_stack)
    posts = [
        path.replace("{automation_id}", automation).replace("{run_id}", str(runs[0]))
        for path in dashboard_posts(rt_stack)
    ]
    assert "/dashboard/logout" in posts and "/dashboard/login" in posts
    with signed_in(api_server) as browser:
        token = csrf_token(browser.get(f"/dashboard/automations/{automation}/simulate").text)
        wrong = {}
        for path in posts:
            fields = {"status": "disabled", "cancel_runs": "yes"}
            for attempt in (
                browser.post(path, data=fields),
                browser.post(path, data={**fields, "csrf_token": "forged"}),
                browser.post(path, json={**fields, "csrf_token": token}),
                browser.post(
                    path,
                    content=f"csrf_token={token}&status=disabled",
                    headers={"content-type": "text/plain"},
                ),
            ):
                if attempt.status_code != 403:
                    wrong[path] = (attempt.status_code, attempt.text[:200])
        assert not wrong, wrong
        # Nothing was done, and the session is still open.
        assert api.get(f"/automations/{automation}").json()["status"] == "enabled"
        assert {api.get(f"/automations/{automation}/runs/{r}").json()["status"] for r in runs} == {
            "completed",
            "failed",
        }
        assert browser.get("/dashboard/").status_code == 200


def test_stored_markup_is_shown_as_text_on_every_page(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack
) -> None:
    automation, runs = seed(api, rt_stack)
    base = f"/dashboard/automations/{automation}"
    pages = ["/dashboard/", base, *(f"{base}/{tab}" for tab in ("runs", "metrics", "simulate"))]
    pages += [f"{base}/runs/retry", f"{base}/runs/replay", *(f"{base}/runs/{r}" for r in runs)]
    with signed_in(api_server) as browser:
        for path in pages:
            answer = browser.get(path)
            assert answer.status_code == 200, path
            assert not any(raw in answer.text for raw in RAW), path
            assert "&lt;script&gt;" in answer.text or "&#34;" in answer.text, path
        page = browser.get(f"{base}/simulate").text
        simulated = browser.post(
            f"{base}/simulate",
            data={
                "csrf_token": csrf_token(page),
                "contact": "sim@example.test",
                "first_name": HOSTILE,
                "payload": json.dumps({"a": HOSTILE}),
                "properties": "{}",
                "then": "",
                "until": "",
                "last_name": "",
                "unsubscribed": "",
            },
        )
        assert simulated.status_code == 200
        assert not any(raw in simulated.text for raw in RAW)


def test_hostile_fields_are_refused_with_the_reason_never_a_server_error(
    api_server: ApiServer, rt_stack: Stack
) -> None:
    """Input that Python's JSON parser cannot nest, or PostgreSQL cannot hold (a NUL), or a date
    at the calendar's end: a 422 page that says what is wrong, and the connection stays up."""
    trigger = {"key": "start", "type": "trigger", "config": {"event_name": "hostile"}}
    automation = make_automation(rt_stack, [trigger], [])
    base = f"/dashboard/automations/{automation}"
    deep = "[" * 5000
    with signed_in(api_server) as browser:
        token = csrf_token(browser.get(f"{base}/simulate").text)
        blank = {name: "" for name in ("first_name", "last_name", "unsubscribed", "then", "until")}
        simulate = {"csrf_token": token, "contact": "sim@example.test", **blank}
        answers = {
            "properties": browser.post(
                f"{base}/simulate", data={**simulate, "properties": deep, "payload": "{}"}
            ),
            "payload": browser.post(
                f"{base}/simulate", data={**simulate, "properties": "{}", "payload": deep}
            ),
            "contact": browser.post(
                f"{base}/simulate",
                data={**simulate, "contact": "a\x00@example.test", "properties": "{}"},
            ),
            "metrics": browser.get(f"{base}/metrics?start=9999-12-01&end=9999-12-31"),
            "bulk form": browser.get(f"{base}/runs/retry?error_code=%00"),
            "bulk post": browser.post(
                f"{base}/runs/retry", data={"csrf_token": token, "error_code": "\x00"}
            ),
        }
        said = {name: (a.status_code, problem(a.text)) for name, a in answers.items()}
        assert said == {
            "properties": (
                422,
                "Contact properties is nested too deeply (objects and arrays within each other)",
            ),
            "payload": (
                422,
                "The event payload is nested too deeply (objects and arrays within each other)",
            ),
            "contact": (
                422,
                "`contact.email` must not contain line breaks or other control "
                "characters; got &#39;a\\x00@example.test&#39;",
            ),
            "metrics": (422, "The end date must be before 9999-12-31."),
            "bulk form": (422, "`error_code` holds a NUL character, which cannot be stored"),
            "bulk post": (422, "`error_code` holds a NUL character, which cannot be stored"),
        }, said
        assert browser.get("/dashboard/").status_code == 200


def problem(page: str) -> str:
    """The reason a dashboard page gives for refusing its input."""
    found = re.search(r'<p class="(?:error|problem-text)"[^>]*>(.*?)</p>', page, re.S)
    return found.group(1).strip() if found else page[:300]


def test_a_replay_form_posted_twice_replays_once(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack
) -> None:
    """Two tabs, or a submit the browser repeats: the form says how many replays the page
    showed, so the second post is refused with the first's run; a fresh page replays again."""
    automation, runs = seed(api, rt_stack)
    failed = next(r for r in runs if rt_stack.run(r).status == "failed")
    path = f"/dashboard/automations/{automation}/runs/{failed}"
    with signed_in(api_server) as browser:
        shown = browser.get(path).text
        form = {"csrf_token": csrf_token(shown), "replays_seen": replays_seen(shown)}
        assert form["replays_seen"] == "0"
        first = browser.post(f"{path}/replay", data=form)
        again = browser.post(f"{path}/replay", data=form)
        replays = api.get(f"/automations/{automation}/runs/{failed}").json()["replayed_by"]
        assert first.status_code == 303 and len(replays) == 1
        assert (again.status_code, problem(again.text)) == (
            422,
            f"Run was replayed meanwhile (by run {replays[0]}); open it again to replay it "
            "once more",
        )
        fresh = browser.get(path).text
        assert replays_seen(fresh) == "1"
        meant = browser.post(f"{path}/replay", data={**form, "replays_seen": "1"})
        assert meant.status_code == 303
        assert len(api.get(f"/automations/{automation}/runs/{failed}").json()["replayed_by"]) == 2
        bad = browser.post(f"{path}/replay", data={**form, "replays_seen": "-1"})
        assert (bad.status_code, problem(bad.text)) == (
            422,
            "`replays_seen` must be the number of replays the page showed",
        )


def replays_seen(page: str) -> str:
    found = re.search(r'name="replays_seen" value="([^"]*)"', page)
    assert found is not None
    return found.group(1)


def test_a_list_link_with_both_cursors_is_not_a_page(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack
) -> None:
    """The pager's links carry `after` or `before`: a link with both is refused, not read as
    one of them."""
    automation, runs = seed(api, rt_stack)
    both = f"after={runs[0]}&before={runs[1]}"
    with signed_in(api_server) as browser:
        for path in (f"/dashboard/automations/{automation}/runs?{both}", f"/dashboard/?{both}"):
            answer = browser.get(path)
            assert (answer.status_code, problem(answer.text)) == (
                422,
                "A page link says `after` or `before`, not both.",
            ), path
