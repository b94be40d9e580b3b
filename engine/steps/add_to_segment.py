"""add_to_segment: make the run's contact a member of a segment that exists."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from engine.outcomes import Completed, Failed, Outcome
from engine.step_configs import only_keys, uuid_text
from engine.step_types import DEFAULT_ONLY, StepTypeSpec
from engine.steps.context import StepRun
from engine.store import segments as segment_store
from models.enums import StepType


def check_add_to_segment(config: dict[str, Any], at: str) -> dict[str, Any]:
    only_keys(config, {"segment_id"}, at, "add_to_segment config")
    return {"segment_id": uuid_text(config.get("segment_id"), f"{at}.segment_id", "segment_id")}


def run_add_to_segment(sr: StepRun) -> Outcome:
    contact = sr.run.contact
    assert contact is not None
    segment_id = uuid.UUID(sr.step.config["segment_id"])
    if not segment_store.segment_exists(sr.session, segment_id):
        return Failed(f"Segment `{segment_id}` not found", "segment_not_found")
    # The claim locked the contact, and the segment is held until the commit: the membership
    # rides on the step's end.
    joined = segment_store.carry_membership(sr.session, segment_id, contact.id, sr.now)
    output = {"contact_id": str(contact.id), "segment_id": str(segment_id)}
    return Completed(output=output, carried=joined)


def _summary(config: Mapping[str, Any]) -> str:
    return "segment " + str(config.get("segment_id", ""))[:13]


SPEC = StepTypeSpec(
    name=StepType.ADD_TO_SEGMENT,
    check_config=check_add_to_segment,
    handler=run_add_to_segment,
    connection_types=DEFAULT_ONLY,
    label="add to segment",
    instant=True,
    summary=_summary,
    locks_contact=True,
)
