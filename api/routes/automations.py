"""Automations: create, list, get, update, delete, duplicate, stop."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from api import serialize_automations
from api.deps import Authenticated, Rt, Sender
from api.schemas.automations import (
    Automation,
    AutomationDeleted,
    AutomationList,
    AutomationRef,
    AutomationStopped,
    CreateAutomation,
    StopAutomation,
    UpdateAutomation,
)
from api.wire import PageQuery, StoredJson, UuidPath, parse_id, stored_json
from engine import lifecycle, reports
from engine.db import reads, transaction

router = APIRouter(tags=["automations"])

ID = "automation_id"


@router.post("/automations", status_code=201, summary="Create an automation")
def create(body: CreateAutomation, rt: Rt, _: Authenticated) -> AutomationRef:
    """Validate the graph and store it as the automation's first version."""
    with transaction(rt.sessions) as session:
        automation = lifecycle.create_automation(
            session,
            name=body.name,
            status=body.status,
            steps=body.steps,
            connections=body.connections,
            now=rt.clock.now(),
        )
    return AutomationRef(id=str(automation.id))


@router.get("/automations", summary="List automations")
def list_automations(
    rt: Rt,
    _: Authenticated,
    cursor: PageQuery,
    status: str | None = None,
) -> AutomationList:
    """Newest first; deleted automations never appear."""
    with reads(rt.read_sessions) as session:
        page = reports.list_automations(
            session, status=status, limit=cursor.limit, after=cursor.after, before=cursor.before
        )
    return AutomationList(
        has_more=page.has_more,
        data=[serialize_automations.automation_item(a) for a in page.items],
    )


@router.get(
    "/automations/{automation_id}", summary="Retrieve an automation", response_model=Automation
)
def get(automation_id: UuidPath, rt: Rt, _: Authenticated) -> StoredJson:
    """The automation with the steps and connections of its current version."""
    key = parse_id(automation_id, ID)
    with reads(rt.read_sessions) as session:
        detail = reports.get_automation(session, key)
    return stored_json(serialize_automations.automation_detail(detail))


@router.patch("/automations/{automation_id}", summary="Update an automation")
def update(
    automation_id: UuidPath, body: UpdateAutomation, rt: Rt, _: Authenticated
) -> AutomationRef:
    """Rename, enable or disable, or replace the graph of a disabled automation."""
    key = parse_id(automation_id, ID)
    with transaction(rt.sessions) as session:
        lifecycle.update_automation(
            session, key, body.model_dump(exclude_unset=True), now=rt.clock.now()
        )
    return AutomationRef(id=str(key))


@router.delete("/automations/{automation_id}", summary="Delete an automation")
def delete(automation_id: UuidPath, rt: Rt, sender: Sender, _: Authenticated) -> AutomationDeleted:
    """Remove it from every list; its unfinished runs are cancelled."""
    key = parse_id(automation_id, ID)
    cancelling = lifecycle.delete(rt, sender, key)
    return AutomationDeleted(id=str(key), runs_cancelling=not cancelling.finished)


@router.post(
    "/automations/{automation_id}/duplicate", status_code=201, summary="Duplicate an automation"
)
def duplicate(automation_id: UuidPath, rt: Rt, _: Authenticated) -> AutomationRef:
    """A disabled copy with the same graph, named "<name> (Copy)"."""
    key = parse_id(automation_id, ID)
    with transaction(rt.sessions) as session:
        copy = lifecycle.duplicate_automation(session, key, now=rt.clock.now())
    return AutomationRef(id=str(copy.id))


@router.post("/automations/{automation_id}/stop", summary="Stop an automation")
def stop(
    automation_id: UuidPath,
    rt: Rt,
    sender: Sender,
    _: Authenticated,
    body: Annotated[StopAutomation | None, Body()] = None,
) -> AutomationStopped:
    """Disable it: no new runs; with `cancel_runs`, unfinished runs are cancelled too."""
    key = parse_id(automation_id, ID)
    cancel_runs = body.cancel_runs if body is not None else False
    cancelling = lifecycle.stop(rt, sender, key, cancel_runs=cancel_runs)
    left = cancelling is not None and not cancelling.finished
    return AutomationStopped(id=str(key), runs_cancelling=left)
