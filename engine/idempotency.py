"""Idempotency-Key semantics: a replay returns the first answer; another body under the same
key is refused; two requests racing on one key see one run, the other a 409."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine.errors import AutomationsError, InvalidInput
from engine.store import idempotency as record_store

TTL = dt.timedelta(hours=24)
# Answers about the request's circumstances, not its content: a retry must run again, so they
# are never kept. 401 and 403 (the key, not the request, was wrong), 429 (retry after the wait).
NOT_KEPT = frozenset({401, 403, 429})
# A record still in progress after this long belongs to a request that died mid-way.
ABANDONED_AFTER = dt.timedelta(minutes=1)


class IdempotencyConflict(AutomationsError):
    """The key was used with another request, or its first request is still running."""


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: bytes


def scope_key(caller: str, key: str) -> str:
    """The record's key: the caller (an API key's id, never its secret) and its Idempotency-Key."""
    if not 1 <= len(key) <= 256:
        raise InvalidInput(
            "The `Idempotency-Key` header must be 1 to 256 characters", field="Idempotency-Key"
        )
    return hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def begin(session: Session, scope: str, fingerprint: str, *, now: dt.datetime) -> Replay | None:
    """None: go ahead (the key is now ours). A Replay: answer with it. Raises on conflict."""
    if record_store.claim_record(session, scope, fingerprint, now, now + TTL):
        return None
    record = record_store.get_record(session, scope)
    if record is None or record.expires_at <= now:
        record_store.restart_record(session, scope, fingerprint, now, now + TTL)
        return None
    if record.request_hash != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used with a different request",
            code="invalid_idempotent_request",
        )
    if record.status_code is None:
        if now - record.created_at < ABANDONED_AFTER:
            raise IdempotencyConflict(
                "A request with this Idempotency-Key is still being processed; retry later",
                code="concurrent_idempotent_requests",
            )
        record_store.restart_record(session, scope, fingerprint, now, now + TTL)
        return None
    return Replay(record.status_code, record.response_body or b"")


def kept(status_code: int) -> bool:
    """Whether an answer is replayed: not a server error, nor one in NOT_KEPT."""
    return status_code < 500 and status_code not in NOT_KEPT


def finish(session: Session, scope: str, status_code: int, body: bytes) -> None:
    """Keep the answer for replay; one that is not `kept` is forgotten so that a retry runs."""
    if not kept(status_code):
        record_store.delete_record(session, scope)
    else:
        record_store.complete_record(session, scope, status_code, body)
