"""contact_delete: delete the run's contact; the rest of the run is skipped."""

from __future__ import annotations

from typing import Any

from engine.contacts import remove_contact
from engine.outcomes import Completed, Outcome
from engine.step_configs import only_keys
from engine.step_types import DEFAULT_ONLY, StepTypeSpec
from engine.steps.context import StepRun
from models.enums import StepType


def check_contact_delete(config: dict[str, Any], at: str) -> dict[str, Any]:
    only_keys(config, (), at, "contact_delete config")
    return config


def run_contact_delete(sr: StepRun) -> Outcome:
    contact = sr.run.contact
    assert contact is not None
    remove_contact(sr.session, contact.id, sr.now)  # its other runs that wait end too
    return Completed(output={"contact_id": str(contact.id), "deleted": True})


SPEC = StepTypeSpec(
    name=StepType.CONTACT_DELETE,
    check_config=check_contact_delete,
    handler=run_contact_delete,
    connection_types=DEFAULT_ONLY,
    label="contact delete",
    instant=True,
    config_required=False,
    deletes_contact=True,
    locks_contact=True,
)
