"""API keys: create (the secret is shown once), list, rename, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import Authenticated, Rt
from api.schemas.api_keys import (
    ApiKeyCreated,
    ApiKeyDeleted,
    ApiKeyItem,
    ApiKeyList,
    ApiKeyRef,
    CreateApiKey,
    UpdateApiKey,
)
from api.serialize_resources import page_body
from api.wire import PageQuery, UuidPath, parse_id, wire_time
from engine.api_keys import create_api_key, delete_api_key, list_api_keys, rename_api_key
from engine.db import reads, transaction
from models.tables import ApiKey

router = APIRouter(tags=["api-keys"])


@router.post("/api-keys", status_code=201, summary="Create an API key")
def create(body: CreateApiKey, rt: Rt, _: Authenticated) -> ApiKeyCreated:
    with transaction(rt.sessions) as session:
        key, secret = create_api_key(
            session,
            name=body.name,
            permission=body.permission,
            domain_id=body.domain_id,
            now=rt.clock.now(),
        )
    return ApiKeyCreated(id=str(key.id), token=secret)


@router.get("/api-keys", summary="List API keys")
def list_keys(rt: Rt, _: Authenticated, cursor: PageQuery) -> ApiKeyList:
    with reads(rt.read_sessions) as session:
        page = list_api_keys(session, limit=cursor.limit, after=cursor.after, before=cursor.before)
        return page_body(ApiKeyList, page, _item)


@router.patch("/api-keys/{api_key_id}", summary="Rename an API key")
def update(api_key_id: UuidPath, body: UpdateApiKey, rt: Rt, _: Authenticated) -> ApiKeyRef:
    key_id = parse_id(api_key_id, "api_key_id")
    with transaction(rt.sessions) as session:
        rename_api_key(session, key_id, name=body.name)
    return ApiKeyRef(id=str(key_id))


@router.delete("/api-keys/{api_key_id}", summary="Delete an API key")
def delete(api_key_id: UuidPath, request: Request, rt: Rt, _: Authenticated) -> ApiKeyDeleted:
    key_id = parse_id(api_key_id, "api_key_id")
    with transaction(rt.sessions) as session:
        delete_api_key(session, key_id, now=rt.clock.now())
    request.app.state.key_cache.clear()
    return ApiKeyDeleted(id=str(key_id))


def _item(key: ApiKey) -> ApiKeyItem:
    used = wire_time(key.last_used_at) if key.last_used_at else None
    return ApiKeyItem(
        id=str(key.id), name=key.name, created_at=wire_time(key.created_at), last_used_at=used
    )
