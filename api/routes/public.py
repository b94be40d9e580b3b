"""Endpoints without an API key: health, readiness, Prometheus metrics, unsubscribe."""

from __future__ import annotations

import html
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import Rt
from api.prometheus import exposition
from api.schemas.operations import Health, Readiness, SweeperHealthAnswer
from api.wire import wire_time
from engine.db import reads, transaction
from engine.metrics import snapshot
from engine.store import health as health_store
from engine.sweeper_health import sweeper_health
from engine.unsubscribe import contact_for_token, unsubscribe_by_token

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness")
def health() -> Health:
    return Health()


@router.get(
    "/ready",
    summary="Readiness: database and broker reachable",
    responses={503: {"model": Readiness, "description": "A check failed"}},
)
def ready(request: Request, response: Response, rt: Rt) -> Readiness:
    checks: dict[str, str] = {}
    try:
        with reads(rt.read_sessions) as session:
            health_store.ping(session)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        request.app.state.ping_broker()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    ok = all(value == "ok" for value in checks.values())
    response.status_code = 200 if ok else 503
    return Readiness(status="ok" if ok else "unavailable", **checks)


@router.get(
    "/health/sweeper",
    summary="The sweeper's last tick: 503 once it is late",
    responses={503: {"model": SweeperHealthAnswer, "description": "The sweeper is late"}},
)
def sweeper(response: Response, rt: Rt) -> SweeperHealthAnswer:
    """For an alert on beat or the sweeper, not for a load balancer: see docs/operations.md."""
    with reads(rt.read_sessions) as session:
        found = sweeper_health(
            session, now=rt.clock.now(), late_after=rt.settings.sweeper_late_after
        )
    response.status_code = 503 if found.late else 200
    return SweeperHealthAnswer(
        status=found.status,
        last_tick_at=wire_time(found.last_tick_at),
        age_seconds=found.age_seconds if math.isfinite(found.age_seconds) else None,
        late_after_seconds=found.late_after_seconds,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(rt: Rt) -> Response:
    with reads(rt.read_sessions) as session:
        data = snapshot(
            session, now=rt.clock.now(), sweeper_late_after=rt.settings.sweeper_late_after
        )
    return Response(exposition(data), media_type=CONTENT_TYPE_LATEST)


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.5rem 1rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    # A contact's address is on the page: no cache keeps it. CSP and the rest: api.security_headers.
    page = _PAGE.format(title=html.escape(title), body=body)
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})


_NOT_FOUND = ("Link not valid", "<p>This unsubscribe link is not valid.</p>")


# These answer people, not programs: a bad link gets an HTML page too.
_HTML_PAGES: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "The link is not valid; nothing changed",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="Unsubscribe page",
    responses=_HTML_PAGES,
)
def unsubscribe_page(token: str, rt: Rt) -> HTMLResponse:
    with reads(rt.read_sessions) as session:
        contact = contact_for_token(session, token, rt.secret())
    if contact is None:
        return _page(*_NOT_FOUND, status=404)
    if contact.unsubscribed:
        return _page("Unsubscribed", f"<p>{html.escape(contact.email)} is unsubscribed.</p>")
    return _page(
        "Unsubscribe",
        f"<p>Stop emails to {html.escape(contact.email)}?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


@router.post(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="One-click unsubscribe",
    responses=_HTML_PAGES,
)
def unsubscribe(token: str, rt: Rt) -> HTMLResponse:
    """RFC 8058 one-click: a POST to the List-Unsubscribe URL unsubscribes the contact."""
    with transaction(rt.sessions) as session:
        contact = unsubscribe_by_token(session, token, rt.secret(), now=rt.clock.now())
    if contact is None:
        return _page(*_NOT_FOUND, status=404)
    return _page("Unsubscribed", f"<p>{html.escape(contact.email)} will get no more emails.</p>")
