"""contact_update (alias update_contact): set the contact's names, unsubscribed flag and
properties, from literals or variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.contacts import check_changes, check_name, check_property_key
from engine.errors import InvalidInput, StepFailure
from engine.outcomes import Completed, Failed, Outcome
from engine.step_configs import only_keys
from engine.step_types import DEFAULT_ONLY, StepTypeSpec
from engine.steps.context import StepRun
from engine.store import contacts as contact_store
from engine.templates import format_value
from engine.variables import resolve_value, validate_value
from models.enums import StepType

_TEXT_FIELDS = ("first_name", "last_name")
_CONTACT_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "first_name": ((str, type(None)), "a string or null"),
    "last_name": ((str, type(None)), "a string or null"),
    "unsubscribed": ((bool,), "a boolean"),
}


def check_contact_update(config: dict[str, Any], at: str) -> dict[str, Any]:
    keys = {*_CONTACT_FIELDS, "properties"}
    only_keys(config, keys, at, "contact_update config")
    if not config:
        raise InvalidInput(f"needs at least one of {', '.join(sorted(keys))}", field=at)
    for name, (literals, what) in _CONTACT_FIELDS.items():
        if name in config:
            validate_value(config[name], field=f"{at}.{name}", literals=literals, what=what)
    for name in _TEXT_FIELDS:
        check_name(f"{at}.{name}", config.get(name))
    properties = config.get("properties", {})
    if not isinstance(properties, dict):
        raise InvalidInput("properties must be an object", field=f"{at}.properties")
    for name, value in properties.items():
        check_property_key(name, f"{at}.properties.{name}")
        validate_value(value, field=f"{at}.properties.{name}")
    return config


def _resolve_changes(config: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        if name in config:
            value = resolve_value(config[name], variables)
            if isinstance(value, dict | list):
                raise StepFailure(
                    f"`{name}` must be text, got {type(value).__name__} from the variable",
                    code="type_mismatch",
                )
            if value is not None and not isinstance(value, str):
                value = format_value(value)  # as an email would show it: `true`, not `True`
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
        check_changes(changes, contact.properties, sr.rt.json_limits)
    except StepFailure as failure:
        return Failed(failure.message, failure.code)
    except InvalidInput as refused:  # what the contact endpoints would refuse too
        return Failed(f"{refused.message}; the contact is unchanged", "invalid_contact_value")
    # The claim locked the contact: its change rides on the step's end.
    change = contact_store.carry_change(sr.session, contact.id, changes, sr.now)
    return Completed(output={"contact_id": str(contact.id), "updated": changes}, carried=change)


def _summary(config: Mapping[str, Any]) -> str:
    return "sets " + ", ".join(sorted(config)) if config else ""


SPEC = StepTypeSpec(
    name=StepType.CONTACT_UPDATE,
    check_config=check_contact_update,
    handler=run_contact_update,
    connection_types=DEFAULT_ONLY,
    label="contact update",
    instant=True,
    summary=_summary,
    aliases=("update_contact",),
    locks_contact=True,
)
