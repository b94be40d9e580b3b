"""Steps that change the contact: contact_update, contact_delete, add_to_segment."""

from __future__ import annotations

import uuid
from typing import Any

from engine.errors import StepFailure
from engine.outcomes import Completed, Failed, Outcome
from engine.steps.context import StepRun
from engine.store import contacts as contact_store
from engine.variables import resolve_value

_TEXT_FIELDS = ("first_name", "last_name")


def _resolve_changes(config: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        if name in config:
            value = resolve_value(config[name], variables)
            if value is not None and not isinstance(value, str):
                value = str(value)
            changes[name] = value
    if "unsubscribed" in config:
        value = resolve_value(config["unsubscribed"], variables)
        if not isinstance(value, bool):
            raise StepFailure(
                f"`unsubscribed` must be true or false, got {type(value).__name__}",
                code="type_mismatch",
            )
        changes["unsubscribed"] = value
    if "properties" in config:
        changes["properties"] = {
            key: resolve_value(value, variables) for key, value in config["properties"].items()
        }
    return changes


def run_contact_update(sr: StepRun) -> Outcome:
    contact = sr.run.contact
    assert contact is not None
    try:
        changes = _resolve_changes(sr.step.config, sr.variables())
    except StepFailure as failure:
        return Failed(failure.message, failure.code)
    locked = contact_store.lock_contact(sr.session, contact.id)
    assert locked is not None
    contact_store.update_contact_row(sr.session, locked, changes, sr.now)
    return Completed(output={"contact_id": str(contact.id), "updated": changes})


def run_contact_delete(sr: StepRun) -> Outcome:
    contact = sr.run.contact
    assert contact is not None
    contact_store.delete_contact(sr.session, contact.id)
    return Completed(output={"contact_id": str(contact.id), "deleted": True})


def run_add_to_segment(sr: StepRun) -> Outcome:
    contact = sr.run.contact
    assert contact is not None
    segment_id = uuid.UUID(sr.step.config["segment_id"])
    if not contact_store.segment_exists(sr.session, segment_id):
        return Failed(f"Segment `{segment_id}` not found", "segment_not_found")
    contact_store.add_membership(sr.session, segment_id, contact.id, sr.now)
    return Completed(output={"contact_id": str(contact.id), "segment_id": str(segment_id)})
