"""Templates, by id or alias: create, list, retrieve, update, delete, publish, duplicate."""

from __future__ import annotations

from fastapi import APIRouter

from api import serialize_resources as serialize
from api.deps import Authenticated, Rt
from api.schemas.templates import (
    CreateTemplate,
    Template,
    TemplateDeleted,
    TemplateList,
    TemplateRef,
    UpdateTemplate,
)
from api.wire import PageQuery
from engine import content
from engine.db import reads, transaction

router = APIRouter(tags=["templates"])


@router.post("/templates", status_code=201, summary="Create a template")
def create(body: CreateTemplate, rt: Rt, _: Authenticated) -> TemplateRef:
    """A new draft; publish it before a send_email step can use it."""
    with transaction(rt.sessions) as session:
        template = content.create_template(
            session, body.model_dump(exclude_unset=True), now=rt.clock.now()
        )
    return TemplateRef(id=str(template.id))


@router.get("/templates", summary="List templates")
def list_templates(
    rt: Rt,
    _: Authenticated,
    cursor: PageQuery,
) -> TemplateList:
    with reads(rt.read_sessions) as session:
        page = content.list_templates(
            session, limit=cursor.limit, after=cursor.after, before=cursor.before
        )
    return serialize.page_body(TemplateList, page, serialize.template_item)


@router.get("/templates/{template_id}", summary="Retrieve a template by id or alias")
def get(template_id: str, rt: Rt, _: Authenticated) -> Template:
    with reads(rt.read_sessions) as session:
        template = content.find_template(session, template_id)
    return serialize.template(template)


@router.patch("/templates/{template_id}", summary="Update a template by id or alias")
def update(template_id: str, body: UpdateTemplate, rt: Rt, _: Authenticated) -> TemplateRef:
    with transaction(rt.sessions) as session:
        template = content.update_template(
            session, template_id, body.model_dump(exclude_unset=True), now=rt.clock.now()
        )
    return TemplateRef(id=str(template.id))


@router.delete("/templates/{template_id}", summary="Delete a template by id or alias")
def delete(template_id: str, rt: Rt, _: Authenticated) -> TemplateDeleted:
    with transaction(rt.sessions) as session:
        key = content.delete_template(session, template_id, now=rt.clock.now())
    return TemplateDeleted(id=str(key))


@router.post("/templates/{template_id}/publish", summary="Publish a template")
def publish(template_id: str, rt: Rt, _: Authenticated) -> TemplateRef:
    """Status becomes `published`, with `published_at` now."""
    with transaction(rt.sessions) as session:
        template = content.publish_template(session, template_id, now=rt.clock.now())
    return TemplateRef(id=str(template.id))


@router.post("/templates/{template_id}/duplicate", summary="Duplicate a template")
def duplicate(template_id: str, rt: Rt, _: Authenticated) -> TemplateRef:
    """A draft copy, without the alias; 200 as from Resend (an automation's duplicate is 201)."""
    with transaction(rt.sessions) as session:
        template = content.duplicate_template(session, template_id, now=rt.clock.now())
    return TemplateRef(id=str(template.id))
