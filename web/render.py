"""Jinja2 pages with autoescaping, the dashboard's filters and its security headers."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from engine.durations import format_duration, format_offset
from web import formats, links
from web.graph_layout import step_label

# Only our own files: no inline script, no CDN, no external font, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STATUS_LABELS = {
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "skipped": "Skipped",
    "pending": "Pending",
    "waiting": "Waiting",
    "enabled": "Enabled",
    "disabled": "Disabled",
    "done": "Done",
}


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("web"),
        autoescape=select_autoescape(default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=formats.utc_text,
        iso=formats.iso,
        short_id=formats.short_id,
        duration=formats.human_duration,
        pretty_json=formats.pretty_json,
        count=formats.count_text,
        status_label=lambda status: STATUS_LABELS.get(str(status), str(status)),
        offset=format_offset,
        span=format_duration,
        step_label=step_label,
    )
    env.globals["elapsed"] = formats.elapsed
    return env


TEMPLATES = _environment()


def page(
    request: Request, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render a template with what every page needs: the session's CSRF token and the time."""
    state = request.state
    session = getattr(state, "dashboard_session", None)
    html = TEMPLATES.get_template(template).render(
        request=request,
        csrf_token=session.csrf if session is not None else "",
        signed_in=bool(session is not None and session.signed_in),
        server_now=formats.iso(getattr(state, "now", None)),
        root=links.root(request.scope.get("root_path")),
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def error_page(
    request: Request, status_code: int, title: str, message: str, *, back: str | None = None
) -> HTMLResponse:
    """A page that says what went wrong and where to go next, never a stack trace."""
    return page(
        request, "error.html", status_code=status_code, title=title, message=message, back=back
    )


def trusted_svg(svg: str) -> Markup:
    """SVG built by web.charts or web.graph_layout, which escape every text they write."""
    return Markup(svg)  # noqa: S704 - the builders escape all text with html.escape
