"""Signed unsubscribe tokens: HMAC-SHA256 over the contact id with the server's secret."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import uuid

from sqlalchemy.orm import Session

from engine.store import contacts as contact_store
from models.tables import Contact


def _sign(contact_id: uuid.UUID, secret: str) -> bytes:
    return hmac.new(secret.encode(), b"unsubscribe:" + contact_id.bytes, hashlib.sha256).digest()


def make_token(contact_id: uuid.UUID, secret: str) -> str:
    raw = contact_id.bytes + _sign(contact_id, secret)[:16]
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_token(token: str, secret: str) -> uuid.UUID | None:
    """The contact a token names, or None when it is malformed or forged."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) != 32:
        return None
    contact_id = uuid.UUID(bytes=raw[:16])
    if not hmac.compare_digest(raw[16:], _sign(contact_id, secret)[:16]):
        return None
    return contact_id


def unsubscribe_url(public_url: str, contact_id: uuid.UUID, secret: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{make_token(contact_id, secret)}"


def unsubscribe_by_token(
    session: Session, token: str, secret: str, *, now: dt.datetime
) -> Contact | None:
    """Mark the contact a valid token names as unsubscribed; None (and no change) otherwise."""
    contact_id = read_token(token, secret)
    if contact_id is None:
        return None
    contact = contact_store.get_contact(session, contact_id, for_update=True)
    if contact is not None and not contact.unsubscribed:
        contact_store.update_contact(session, contact, {"unsubscribed": True}, now)
    return contact


def contact_for_token(session: Session, token: str, secret: str) -> Contact | None:
    contact_id = read_token(token, secret)
    return contact_store.get_contact(session, contact_id) if contact_id else None
