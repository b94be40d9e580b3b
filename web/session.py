"""The dashboard's session: an HMAC-signed cookie with the key, a CSRF token and an expiry.

A signed-in cookie also names a session kept on the server (engine.dashboard_sessions), which
signing out closes: a copy of the cookie made before then signs nobody in afterwards."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass

from starlette.responses import Response

COOKIE = "automations_dashboard"
COOKIE_PATH = "/dashboard"
LIFETIME_SECONDS = 12 * 60 * 60
CSRF_FIELD = "csrf_token"
# Signing with a key derived for this purpose keeps session MACs apart from unsubscribe tokens.
_PURPOSE = b"automations.dashboard.session.v1"


@dataclass(frozen=True)
class DashboardSession:
    """Who signed in (nobody yet, before the sign-in form is posted) and the form token."""

    csrf: str
    expires_at: int
    key_id: uuid.UUID | None = None
    fingerprint: str = ""
    session_id: str = ""

    @property
    def signed_in(self) -> bool:
        return self.key_id is not None


def new_session(
    now: float, *, key_id: uuid.UUID | None = None, fingerprint: str = "", session_id: str = ""
) -> DashboardSession:
    """A fresh session with a new CSRF token, valid for LIFETIME_SECONDS."""
    return DashboardSession(
        csrf=secrets.token_urlsafe(32),
        expires_at=int(now) + LIFETIME_SECONDS,
        key_id=key_id,
        fingerprint=fingerprint,
        session_id=session_id,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> bytes:
    key = hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, payload.encode(), hashlib.sha256).digest()


def encode(session: DashboardSession, secret: str) -> str:
    """The cookie value: base64url(JSON) "." base64url(HMAC-SHA256)."""
    body = {
        "c": session.csrf,
        "e": session.expires_at,
        "k": str(session.key_id) if session.key_id else None,
        "f": session.fingerprint,
        "s": session.session_id,
    }
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_b64(_mac(secret, payload))}"


def decode(value: str | None, secret: str, *, now: float) -> DashboardSession | None:
    """The session in a cookie value; None when absent, forged, malformed or expired."""
    if not value or value.count(".") != 1:
        return None
    payload, signature = value.split(".")
    try:
        if not hmac.compare_digest(_unb64(signature), _mac(secret, payload)):
            return None
        body = json.loads(_unb64(payload))
        session = DashboardSession(
            csrf=str(body["c"]),
            expires_at=int(body["e"]),
            key_id=uuid.UUID(body["k"]) if body.get("k") else None,
            fingerprint=str(body.get("f") or ""),
            session_id=str(body.get("s") or ""),
        )
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError):
        return None
    return session if session.expires_at > now and session.csrf else None


def csrf_ok(session: DashboardSession | None, token: str | None) -> bool:
    """Whether a posted form carries this session's CSRF token (constant-time comparison)."""
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())


def set_cookie(response: Response, value: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=LIFETIME_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=secure,
    )


def clear_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure)
