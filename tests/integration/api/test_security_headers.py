"""Every HTML page the server answers carries a CSP that forbids framing, X-Frame-Options,
nosniff and a referrer policy: the dashboard, the unsubscribe pages, the API docs. The routes
are read from the app, so that a new HTML page is checked without being listed here."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route

from engine.unsubscribe import make_token
from tests.integration.factories import make_automation, make_contact, unique_email
from tests.integration.harness import API_KEY, ApiServer, Stack
from wiring.server import create_server

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)


def check_page(answer: httpx.Response) -> list[str]:
    """What is missing from an HTML answer's headers (nothing, for any other answer)."""
    if not answer.headers.get("content-type", "").startswith("text/html"):
        return []
    problems = []
    csp = answer.headers.get("content-security-policy", "")
    if "frame-ancestors 'none'" not in csp:
        problems.append(f"CSP without frame-ancestors 'none': {csp!r}")
    # Only our own origin: no CDN, no other host, no inline code but by its hash. The one
    # exception is the Simulate tab's style-src: the rendered emails it previews (in a sandboxed
    # iframe, scripts blocked) carry their own inline styles, as emails do.
    if answer.url.path.endswith("/simulate"):
        csp = csp.replace("style-src 'self' 'unsafe-inline'", "style-src 'self'")
    sources = re.findall(r"(?:https?:|\*|'unsafe-inline'|'unsafe-eval')", csp)
    if sources:
        problems.append(f"CSP allows {sources}")
    if answer.headers.get("x-frame-options") != "DENY":
        problems.append("no X-Frame-Options: DENY")
    if answer.headers.get("x-content-type-options") != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    if answer.headers.get("referrer-policy") not in ("no-referrer", "same-origin"):
        problems.append(f"Referrer-Policy {answer.headers.get('referrer-policy')!r}")
    return problems


def sign_in(client: httpx.Client) -> None:
    form = client.get("/dashboard/login").text
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/dashboard/login", data={"csrf_token": token, "api_key": API_KEY})
    assert answer.status_code == 303, answer.text


def routes(found: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(prefix, method, path) of every route, through included routers and mounted apps."""
    for route in found:
        if isinstance(route, Mount):
            yield from routes(route.routes, prefix + route.path)
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from routes(included.routes, prefix)  # FastAPI's include_router
        elif isinstance(route, Route) and route.methods:
            for method in sorted(route.methods - {"HEAD"}):
                yield prefix, method, route.path


def fill(path: str, known: dict[str, str]) -> str:
    """The path with its parameters replaced: known values, else ids that match nothing."""
    return re.sub(r"\{(\w+)\}", lambda m: known.get(m[1], str(uuid.uuid4())), path)


def test_every_html_page_is_protected(api_server: ApiServer, rt_stack: Stack) -> None:
    email = unique_email()
    contact_id = make_contact(rt_stack, email)
    automation_id = make_automation(
        rt_stack,
        [
            {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
            {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        ],
        [{"from": "start", "to": "pause"}],
    )
    run_id = rt_stack.send("user.created", email).run_ids[0]
    token = make_token(contact_id, rt_stack.settings.secret_key.get_secret_value())
    values = {
        "automation_id": str(automation_id),
        "run_id": str(run_id),
    }
    app = create_server(rt_stack.settings, runtime=rt_stack.runtime, dispatcher=rt_stack.dispatcher)
    problems: dict[str, list[str]] = {}
    html_pages = set()
    with (
        httpx.Client(base_url=api_server.base_url, timeout=10) as browser,
        api_server.client() as api,
    ):
        # The sign-in page, as a visitor without a session sees it (signed in, it redirects).
        login = browser.get("/dashboard/login")
        assert login.status_code == 200 and not check_page(login), check_page(login)
        sign_in(browser)
        for prefix, method, path in routes(app.routes):
            client = browser if prefix == "/dashboard" else api
            # Real ids for the dashboard's pages; the API's writes get ids that match nothing.
            known = values if client is browser else {"token": token}
            url = prefix + fill(path, known)
            # Dashboard forms are posted without their CSRF token: the refusal is a page too.
            answer = client.request(method, url, data={} if method == "POST" else None)
            if answer.headers.get("content-type", "").startswith("text/html"):
                html_pages.add(f"{method} {prefix}{path}")
            if found := check_page(answer):
                problems[f"{method} {url} -> {answer.status_code}"] = found
        # Pages answered for bad input: a forged unsubscribe link, an unknown dashboard page.
        for client, url in ((api, "/unsubscribe/forged"), (browser, "/dashboard/nowhere")):
            answer = client.get(url)
            assert answer.status_code == 404
            if found := check_page(answer):
                problems[f"GET {url}"] = found
    assert not problems, problems
    expected = {
        "GET /unsubscribe/{token}",
        "POST /unsubscribe/{token}",
        "GET /docs",
        "GET /dashboard/",
        "GET /dashboard/automations/{automation_id}/runs/{run_id}",
        "POST /dashboard/automations/{automation_id}/stop",
    }
    assert expected <= html_pages, expected - html_pages


def test_the_docs_run_no_inline_script_and_load_only_their_own_files(
    api_server: ApiServer,
) -> None:
    answer = httpx.get(api_server.base_url + "/docs")
    csp = answer.headers["content-security-policy"]
    script_src = csp.split("script-src", 1)[1].split(";", 1)[0]
    assert script_src.split() == ["'self'"]
    assert re.findall(r"<script>(.*?)</script>", answer.text, re.S) == []
    assert "//" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', answer.text))
