"""Dashboard sessions kept on the server: a cookie is honoured only while its session is open,
so signing out ends the session itself, not just the browser's copy of the cookie."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid

from sqlalchemy.orm import Session

from engine.store import dashboard_sessions as session_store


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(
    session: Session, key_id: uuid.UUID, *, now: dt.datetime, lifetime: dt.timedelta
) -> str:
    """A new session for a signed-in key; the id returned goes into the cookie only."""
    # Expired sessions are dropped here, so the table grows with sign-ins, never past them.
    session_store.delete_expired(session, now)
    session_id = secrets.token_urlsafe(32)
    session_store.insert_session(
        session, id_hash=_id_hash(session_id), key_id=key_id, now=now, expires_at=now + lifetime
    )
    return session_id


def session_is_open(
    session: Session, session_id: str, key_id: uuid.UUID, *, now: dt.datetime
) -> bool:
    """Whether this session was opened for this key and is neither closed nor expired."""
    if not session_id:
        return False
    return session_store.session_is_open(session, _id_hash(session_id), key_id, now)


def close_session(session: Session, session_id: str) -> None:
    """Sign out: the session's cookie, wherever a copy of it is, no longer signs anyone in."""
    if session_id:
        session_store.delete_session(session, _id_hash(session_id))
