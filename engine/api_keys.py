"""API keys: random secrets shown once, kept as SHA-256 hashes, compared in constant time."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine.errors import Forbidden, InvalidInput, NotFound
from engine.store import api_keys as key_store
from engine.store.paging import Page
from engine.stored_text import check_text
from models.tables import ApiKey

FULL_ACCESS = "full_access"
SENDING_ACCESS = "sending_access"
PERMISSIONS = (FULL_ACCESS, SENDING_ACCESS)
# The key configured in settings (AUTOMATIONS_API_KEY) authenticates as this id.
SETTINGS_KEY_ID = uuid.UUID(int=0)


@dataclass(frozen=True)
class Caller:
    key_id: uuid.UUID
    permission: str


def hash_secret(secret: str) -> str:
    # A SHA-256 is enough here: the secret has 256 bits of entropy, nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    session: Session,
    *,
    name: object,
    permission: object = FULL_ACCESS,
    domain_id: object = None,
    now: dt.datetime,
) -> tuple[ApiKey, str]:
    """A new key and its secret; the secret is not stored and cannot be shown again.

    Resend's `domain_id` (a sending key that may send only from one domain) is refused rather
    than ignored: a key is never given more than it was asked to be restricted to."""
    key_name = _check_name(name)
    if permission not in PERMISSIONS:
        raise InvalidInput(
            f"`permission` must be one of {', '.join(PERMISSIONS)}", field="permission"
        )
    if domain_id is not None:
        raise InvalidInput(
            "`domain_id` is not supported: a key cannot be restricted to one domain here, since"
            " keys send events and each automation's step or template names the sender (on a"
            " verified domain). Create the key without `domain_id`.",
            field="domain_id",
        )
    secret = "re_" + secrets.token_urlsafe(32)
    key = key_store.insert_api_key(
        session,
        name=key_name,
        token_hash=hash_secret(secret),
        token_prefix=secret[:10],
        permission=str(permission),
        now=now,
    )
    return key, secret


def list_api_keys(
    session: Session, *, limit: int, after: uuid.UUID | None, before: uuid.UUID | None
) -> Page[ApiKey]:
    """One page of keys, newest first."""
    return key_store.list_api_keys(session, limit=limit, after=after, before=before)


def rename_api_key(session: Session, key_id: uuid.UUID, *, name: object) -> None:
    """Give the key another name; its secret and permission stay."""
    if not key_store.rename_api_key(session, key_id, _check_name(name)):
        raise NotFound("API key not found")


def delete_api_key(session: Session, key_id: uuid.UUID, *, now: dt.datetime) -> None:
    """Delete the key; NotFound if there is none."""
    if not key_store.delete_api_key(session, key_id, now=now):
        raise NotFound("API key not found")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 50:
        raise InvalidInput(
            "`name` must be a non-empty string of at most 50 characters", field="name"
        )
    check_text(name, "name")
    return name


# `last_used_at` is kept to this precision: a key in constant use is written once a minute.
USED_PRECISION = dt.timedelta(minutes=1)


def authenticate(
    session: Session, secret: str, *, settings_key: str | None, now: dt.datetime | None = None
) -> Caller | None:
    """The caller a bearer secret belongs to, or None; a stored key's use noted at `now`."""
    digest = hash_secret(secret)
    if settings_key and hmac.compare_digest(digest, hash_secret(settings_key)):
        return Caller(SETTINGS_KEY_ID, FULL_ACCESS)
    key = key_store.api_key_by_hash(session, digest)
    if key is None or not hmac.compare_digest(key.token_hash, digest):
        return None
    if now is not None:
        key_store.note_use(session, key.id, now=now, unless_since=now - USED_PRECISION)
    return Caller(key.id, key.permission)


def require_full_access(caller: Caller) -> None:
    """Refuse a sending key anything but sending, with Resend's error and message."""
    if caller.permission != FULL_ACCESS:
        raise Forbidden("This API key is restricted to only send emails")
