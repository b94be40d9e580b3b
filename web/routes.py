"""The dashboard under /dashboard: a sub-app with sign-in, the automations list and actions."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine import dashboard, dashboard_sessions, lifecycle
from engine.after_commit import after_commit
from engine.db import transaction
from engine.dispatch import Dispatcher
from engine.errors import AutomationsError, NotFound
from engine.runtime import Runtime
from web import links, pages, simulation
from web import session as cookies
from web.guard import (
    Form,
    FormRefused,
    Rt,
    Sender,
    SignInLimit,
    SignInRequired,
    User,
    acting,
    client_address,
    current_session,
    secure_cookies,
    settings_key,
    viewing,
)
from web.render import error_page, page

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)
SESSION_LIFETIME = dt.timedelta(seconds=cookies.LIFETIME_SECONDS)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def root(request: Request) -> str:
    return links.root(request.scope.get("root_path"))


@router.get("/login")
def login_form(
    request: Request,
    rt: Rt,
    target: Annotated[str | None, Query(alias="next")] = None,
    notice: str | None = None,
) -> Response:
    """The sign-in form; it opens an anonymous session whose CSRF token the form carries."""
    found = current_session(request)
    if found is not None and found.signed_in:
        return redirect(links.safe_next(target, root(request)))
    fresh = found or cookies.new_session(rt.clock.now().timestamp())
    request.state.dashboard_session = fresh
    answer = page(
        request,
        "login.html",
        next=links.safe_next(target, root(request)),
        notice=links.NOTICES.get(notice or ""),
        error=None,
    )
    cookies.set_cookie(
        answer, cookies.encode(fresh, rt.secret()), secure=secure_cookies(request, rt)
    )
    return answer


@router.post("/login")
def login(request: Request, rt: Rt, form: Form) -> Response:
    """Check the API key; on success a new session (a new CSRF token) holds the key's id.

    Failed attempts count against the address's allowance, as failed API requests do: over
    it, no key is checked at all until the window frees."""
    target = links.safe_next(form.get("next"), root(request))
    limit: SignInLimit = request.app.state.sign_in_limit
    address = client_address(request)
    if wait := limit.peek_address(address).retry_after:
        return _too_many_attempts(request, target, wait)
    now = rt.clock.now()
    try:
        with transaction(rt.sessions) as session:
            signed = dashboard.sign_in(
                session, form.get("api_key", ""), settings_key=settings_key(rt), now=now
            )
            session_id = dashboard_sessions.open_session(
                session, signed.key_id, now=now, lifetime=SESSION_LIFETIME
            )
    except AutomationsError as error:
        if wait := limit.count_address(address).retry_after:
            return _too_many_attempts(request, target, wait)
        return page(
            request, "login.html", status_code=401, next=target, notice=None, error=error.message
        )
    fresh = cookies.new_session(
        now.timestamp(),
        key_id=signed.key_id,
        fingerprint=signed.fingerprint,
        session_id=session_id,
    )
    answer = redirect(target)
    cookies.set_cookie(
        answer, cookies.encode(fresh, rt.secret()), secure=secure_cookies(request, rt)
    )
    return answer


def _too_many_attempts(request: Request, target: str, wait: int) -> Response:
    text = f"Too many failed sign-ins from your address: try again in {wait} s."
    answer = page(request, "login.html", status_code=429, next=target, notice=None, error=text)
    answer.headers["Retry-After"] = str(wait)
    return answer


@router.post("/logout")
def logout(request: Request, rt: Rt, _: Form) -> Response:
    """End the session on the server, then clear the cookie: a copy of it no longer works."""
    found = current_session(request)
    if found is not None and found.session_id:
        with transaction(rt.sessions) as session:
            dashboard_sessions.close_session(session, found.session_id)
    answer = redirect(f"{root(request)}/login?notice=signed_out")
    cookies.clear_cookie(answer, secure=secure_cookies(request, rt))
    return answer


@router.get("/")
def automations(
    request: Request, rt: Rt, user: User, after: str | None = None, before: str | None = None
) -> Response:
    """Every automation with its status, trigger, last 24 hours of runs and last run."""
    cursor_after, cursor_before = links.page_cursor(after, before)
    with viewing(rt, user) as session:
        found = dashboard.overview(
            session, after=cursor_after, before=cursor_before, now=rt.clock.now()
        )
    ids = [row.automation.id for row in found.items]
    return page(
        request,
        "automations.html",
        rows=found.items,
        pager=links.pager(
            root(request) + "/",
            ids,
            has_more=found.has_more,
            after=cursor_after,
            before=cursor_before,
        ),
        notice=links.NOTICES.get(request.query_params.get("notice", "")),
    )


@router.post("/automations/{automation_id}/status")
def set_status(request: Request, automation_id: str, rt: Rt, user: User, form: Form) -> Response:
    """Enable or disable; disabling lets runs in flight finish, like Stop without cancelling."""
    key = links.parse_uuid(automation_id)
    status = form.get("status", "")
    with acting(rt, user) as session:
        lifecycle.update_automation(session, key, {"status": status}, now=rt.clock.now())
    back = links.safe_next(form.get("back"), root(request))
    return redirect(links.with_query(back.split("?")[0], [("notice", status)]))


@router.post("/automations/{automation_id}/stop")
def stop(
    request: Request, automation_id: str, rt: Rt, user: User, form: Form, sender: Sender
) -> Response:
    """Stop: no new runs; runs in flight go on unless "also cancel" was ticked."""
    key = links.parse_uuid(automation_id)
    cancel_runs = form.get("cancel_runs") == "yes"
    with acting(rt, user) as session:
        lifecycle.stop_automation(session, key, cancel_runs=cancel_runs, now=rt.clock.now())
    notice = "stopped"
    if cancel_runs:
        finished = lifecycle.cancel_in_request(rt, sender, key).finished
        notice = "stopped_cancelled" if finished else "stopped_cancelling"
    return redirect(f"{root(request)}/automations/{key}?notice={notice}")


@router.post("/automations/{automation_id}/runs/{run_id}/cancel")
def cancel_run(
    request: Request, automation_id: str, run_id: str, rt: Rt, user: User, form: Form
) -> Response:
    """Cancel one unfinished run; a step already sending finishes."""
    key, run_key = links.parse_uuid(automation_id), links.parse_uuid(run_id)
    with acting(rt, user) as session:
        lifecycle.cancel_run(session, key, run_key, now=rt.clock.now())
    return redirect(f"{root(request)}/automations/{key}/runs/{run_key}?notice=cancelled")


def _sign_in_first(request: Request, _: Exception) -> Response:
    target = request.url.path if request.method == "GET" else root(request) + "/"
    if request.url.query and request.method == "GET":
        target += "?" + request.url.query
    answer = redirect(links.with_query(f"{root(request)}/login", [("next", target)]))
    cookies.clear_cookie(answer, secure=request.url.scheme == "https")
    return answer


def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FormRefused)
    back = request.headers.get("referer") or root(request) + "/"
    if not back.startswith(str(request.base_url).rstrip("/")):
        back = root(request) + "/"
    return error_page(request, 403, "Form refused", exc.reason, back=back)


def _engine_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AutomationsError)
    if isinstance(exc, NotFound):
        text = f"{exc.message}. It may have been deleted, or the link is mistyped."
        return error_page(request, 404, "Not found", text)
    return error_page(request, 422, "That did not work", exc.message, back=None)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        text = "This address does not answer that kind of request. Use the dashboard's links."
        return error_page(request, 405, "Method not allowed", text)
    text = "There is no dashboard page at this address."
    return error_page(request, exc.status_code, "Page not found", text)


def _unstorable(request: Request, exc: Exception) -> Response:
    """A value PostgreSQL refused (out of range for its column, malformed for its type): the
    transaction rolled back, nothing was written; the page names the field when it can."""
    assert isinstance(exc, DataError)
    diag = getattr(exc.orig, "diag", None)
    reason = str(getattr(diag, "message_primary", None) or "the value does not fit its column")
    log.warning("database refused a value: %s", reason)
    field = _field_of(request, reason) or getattr(diag, "column_name", None)
    where = f"`{field}`" if field else "A value of this page"
    text = f"{where} cannot be used here: {reason}. Nothing was changed."
    return error_page(request, 422, "That did not work", text)


def _field_of(request: Request, reason: str) -> str | None:
    """The query field whose value PostgreSQL's message quotes (it quotes the value refused)."""
    for name, value in request.query_params.multi_items():
        if value and f'"{value}"' in reason:
            return name
    return None


def unexpected_page(request: Request, exc: Exception) -> Response:
    """The 500 page of an exception nothing else answered (logged here, with its trace)."""
    log.exception("dashboard error", exc_info=exc)
    text = "Something went wrong on the server. The error is logged; try again in a moment."
    return error_page(request, 500, "Server error", text)


def dashboard_app(rt: Runtime, sign_in_limit: SignInLimit, *, dispatcher: Dispatcher) -> FastAPI:
    """The dashboard as an app to mount at /dashboard, absent from the API's OpenAPI schema."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.runtime = rt
    app.state.sign_in_limit = sign_in_limit
    app.state.dispatcher = after_commit(dispatcher)  # answered by the commit, as the API is
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
    app.include_router(pages.router)
    app.include_router(simulation.router)
    app.add_exception_handler(SignInRequired, _sign_in_first)
    app.add_exception_handler(FormRefused, _refused)
    app.add_exception_handler(AutomationsError, _engine_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(Exception, unexpected_page)
    return app
