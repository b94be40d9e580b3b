"""API keys, stored hashed."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from engine.store.paging import Page, paginate, remember_gone
from models.ids import new_id
from models.tables import ApiKey


def insert_api_key(
    session: Session,
    *,
    name: str,
    token_hash: str,
    token_prefix: str,
    permission: str,
    now: dt.datetime,
) -> ApiKey:
    key = ApiKey(
        id=new_id(),
        name=name,
        token_hash=token_hash,
        token_prefix=token_prefix,
        permission=permission,
        created_at=now,
    )
    session.add(key)
    session.flush()
    return key


def api_key_by_hash(session: Session, token_hash: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.token_hash == token_hash)).first()


def note_use(
    session: Session, key_id: uuid.UUID, *, now: dt.datetime, unless_since: dt.datetime
) -> None:
    """Set the key's `last_used_at` to now, unless it was used since `unless_since`."""
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < unless_since),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def list_api_keys(
    session: Session,
    *,
    limit: int,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
) -> Page[ApiKey]:
    """One page of keys, newest first."""
    return paginate(
        session,
        select(ApiKey),
        created=ApiKey.created_at,
        ident=ApiKey.id,
        limit=limit,
        after=after,
        before=before,
    )


def rename_api_key(session: Session, key_id: uuid.UUID, name: str) -> bool:
    result = session.execute(update(ApiKey).where(ApiKey.id == key_id).values(name=name))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def delete_api_key(session: Session, key_id: uuid.UUID, *, now: dt.datetime) -> bool:
    """Delete the key; its place in the list is kept for page cursors (remember_gone)."""
    gone = [
        (row[0], row[1])
        for row in session.execute(
            delete(ApiKey).where(ApiKey.id == key_id).returning(ApiKey.id, ApiKey.created_at)
        )
    ]
    remember_gone(session, ApiKey.__tablename__, gone, now)
    return bool(gone)
