"""Sending domains: create, list, retrieve, update, delete, verify (an operator's action here)."""

from __future__ import annotations

from fastapi import APIRouter

from api import serialize_resources as serialize
from api.deps import Authenticated, Rt
from api.schemas.domains import CreateDomain, Domain, DomainDeleted, DomainList, UpdateDomain
from api.wire import PageQuery, UuidPath, parse_id
from engine import content
from engine.db import reads, transaction

router = APIRouter(tags=["domains"])

ID = "domain_id"


@router.post("/domains", status_code=201, summary="Create a domain")
def create(body: CreateDomain, rt: Rt, _: Authenticated) -> Domain:
    """The domain object, `not_started`; no DNS is looked up."""
    with transaction(rt.sessions) as session:
        domain = content.create_domain(
            session,
            name=body.name,
            settings=body.model_dump(exclude={"name", "capabilities"}, exclude_none=True),
            now=rt.clock.now(),
        )
    return serialize.domain(domain)


@router.get("/domains", summary="List domains")
def list_domains(
    rt: Rt,
    _: Authenticated,
    cursor: PageQuery,
) -> DomainList:
    with reads(rt.read_sessions) as session:
        page = content.list_domains(
            session, limit=cursor.limit, after=cursor.after, before=cursor.before
        )
    return serialize.page_body(DomainList, page, serialize.domain_item)


@router.get("/domains/{domain_id}", summary="Retrieve a domain")
def get(domain_id: UuidPath, rt: Rt, _: Authenticated) -> Domain:
    key = parse_id(domain_id, ID)
    with reads(rt.read_sessions) as session:
        domain = content.find_domain(session, key)
    return serialize.domain(domain)


@router.patch("/domains/{domain_id}", summary="Update a domain's tracking and TLS settings")
def update(domain_id: UuidPath, body: UpdateDomain, rt: Rt, _: Authenticated) -> Domain:
    """The whole domain object: a superset of Resend's `{object, id}`, as the SDK types it."""
    key = parse_id(domain_id, ID)
    with transaction(rt.sessions) as session:
        changes = body.model_dump(exclude={"capabilities"}, exclude_unset=True)
        domain = content.update_domain(session, key, changes)
    return serialize.domain(domain)


@router.delete("/domains/{domain_id}", summary="Delete a domain")
def delete(domain_id: UuidPath, rt: Rt, _: Authenticated) -> DomainDeleted:
    key = parse_id(domain_id, ID)
    with transaction(rt.sessions) as session:
        content.delete_domain(session, key, now=rt.clock.now())
    return DomainDeleted(id=str(key))


@router.post("/domains/{domain_id}/verify", summary="Mark a domain verified")
def verify(domain_id: UuidPath, rt: Rt, _: Authenticated) -> Domain:
    """No DNS is looked up: verifying is the operator's word, and the domain becomes `verified`."""
    key = parse_id(domain_id, ID)
    with transaction(rt.sessions) as session:
        domain = content.verify_domain(session, key)
    return serialize.domain(domain)
