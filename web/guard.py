"""Who is signed in, CSRF checks on posted forms, and the database session of a signed-in page
(reads for a page, a transaction for a form's change)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Annotated, Protocol
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from engine import dashboard, dashboard_sessions
from engine.db import reads, transaction
from engine.dispatch import Dispatcher
from engine.runtime import Runtime
from web import session as cookies

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16 * 1024


class SignInRequired(Exception):
    """No valid session: the visitor is sent to the sign-in page."""


class FormRefused(Exception):
    """A form without this session's CSRF token, or not a form at all."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Throttle(Protocol):
    @property
    def retry_after(self) -> int | None: ...


class SignInLimit(Protocol):
    """The API's rate limit on failed attempts by address (api.limits.RateLimiter)."""

    def peek_address(self, address: str) -> Throttle: ...

    def count_address(self, address: str) -> Throttle: ...


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def dispatcher(request: Request) -> Dispatcher:
    """Where the engine's messages go once an action's transaction has committed."""
    sender: Dispatcher = request.app.state.dispatcher
    return sender


def settings_key(rt: Runtime) -> str | None:
    return rt.settings.api_key.get_secret_value() if rt.settings.api_key else None


def secure_cookies(request: Request, rt: Runtime) -> bool:
    return request.url.scheme == "https" or rt.settings.public_url.startswith("https://")


def current_session(request: Request) -> cookies.DashboardSession | None:
    """The session in the request's cookie, if valid; kept on request.state for the page."""
    rt = runtime(request)
    now = rt.clock.now()
    request.state.now = now
    found = cookies.decode(request.cookies.get(cookies.COOKIE), rt.secret(), now=now.timestamp())
    request.state.dashboard_session = found
    return found


def signed_in(request: Request) -> cookies.DashboardSession:
    """The signed-in session, or SignInRequired."""
    found = current_session(request)
    if found is None or not found.signed_in:
        raise SignInRequired
    return found


async def checked_form(request: Request) -> dict[str, str]:
    """The fields of a posted form whose CSRF token matches the session's, or FormRefused."""
    if request.headers.get("content-type", "").split(";")[0].strip() != FORM_TYPE:
        raise FormRefused("The dashboard only accepts its own HTML forms.")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise FormRefused("The form is too large.")
    fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    found = current_session(request)
    if found is None:
        raise FormRefused(
            "Your session cookie is missing or has expired. Allow cookies for this site, "
            "reload the page and send the form again."
        )
    if not cookies.csrf_ok(found, fields.get(cookies.CSRF_FIELD)):
        raise FormRefused(
            "This form was not sent from a page of this dashboard session (its CSRF token is "
            "missing or wrong). Reload the page and try again."
        )
    return fields


def viewing(rt: Runtime, user: cookies.DashboardSession) -> AbstractContextManager[Session]:
    """A page's reads (engine/db.py `reads`: no transaction to begin and commit), the first of
    them checking that the session is still open and its key still valid."""
    return _checked(rt, user, reads(rt.read_sessions))


def acting(rt: Runtime, user: cookies.DashboardSession) -> AbstractContextManager[Session]:
    """One transaction for a form's change, whose first reads check the session and its key."""
    return _checked(rt, user, transaction(rt.sessions))


@contextmanager
def _checked(
    rt: Runtime, user: cookies.DashboardSession, scope: AbstractContextManager[Session]
) -> Iterator[Session]:
    """`scope`'s session once the sign-in is found still good: not signed out, not expired,
    its key neither revoked nor changed; else SignInRequired."""
    assert user.key_id is not None
    signed = dashboard.SignedIn(user.key_id, user.fingerprint)
    with scope as session:
        if not dashboard_sessions.session_is_open(
            session, user.session_id, user.key_id, now=rt.clock.now()
        ) or not dashboard.key_is_active(session, signed, settings_key=settings_key(rt)):
            raise SignInRequired
        yield session


Rt = Annotated[Runtime, Depends(runtime)]
User = Annotated[cookies.DashboardSession, Depends(signed_in)]
Form = Annotated[dict[str, str], Depends(checked_form)]
Sender = Annotated[Dispatcher, Depends(dispatcher)]
