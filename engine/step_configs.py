"""Per-step-type config validation: each check returns the config normalised, or raises."""

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.addresses import check_mailbox
from engine.conditions import validate_rule
from engine.durations import parse_duration
from engine.errors import InvalidInput
from engine.headers import check_header_text
from engine.variables import validate_value
from models.enums import StepType

MAX_EVENT_NAME_LENGTH = 255
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_REPLY_TO = 50
_CONTACT_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "first_name": ((str, type(None)), "a string or null"),
    "last_name": ((str, type(None)), "a string or null"),
    "unsubscribed": ((bool,), "a boolean"),
}


def only_keys(data: Mapping[str, Any], allowed: Iterable[str], at: str, what: str) -> None:
    names = sorted(allowed)
    for name in data:
        if name not in names:
            hint = f"allowed keys are {', '.join(names)}" if names else "it takes none"
            raise InvalidInput(f"unknown key {name!r} in {what}: {hint}", field=f"{at}.{name}")


def _text(value: object, at: str, what: str, max_length: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string", field=at)
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(f"{what} must be at most {max_length} characters", field=at)
    return value


def _uuid(value: object, at: str, what: str) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise InvalidInput(f"{what} must be a UUID string, got {value!r}", field=at)
    # Lower case, as str(uuid.UUID(...)) writes it, so stored ids compare equal.
    return value.lower()


def _trigger_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    only_keys(config, {"event_name"}, at, "trigger config")
    _text(config.get("event_name"), f"{at}.event_name", "event_name", MAX_EVENT_NAME_LENGTH)
    return config


def _template(value: object, at: str) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value.keys() & {"id", "alias"}) != 1:
        raise InvalidInput('template needs exactly one of "id" or "alias"', field=at)
    only_keys(value, {"id", "alias", "variables"}, at, "template")
    if "id" in value:
        result: dict[str, Any] = {"id": _uuid(value["id"], f"{at}.id", "template id")}
    else:
        result = {"alias": _text(value["alias"], f"{at}.alias", "template alias")}
    if "variables" in value:
        result["variables"] = _variables(value["variables"], f"{at}.variables")
    return result


def _variables(value: object, at: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput("variables must be an object", field=at)
    for name, item in value.items():
        if not isinstance(name, str) or not _VARIABLE_NAME.fullmatch(name):
            raise InvalidInput(
                f"variable name {name!r} must match {_VARIABLE_NAME.pattern}", field=f"{at}.{name}"
            )
        validate_value(item, field=f"{at}.{name}")
    return value


def _send_email_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    keys = {"template", "template_id", "variables", "from", "subject", "reply_to"}
    only_keys(config, keys, at, "send_email config")
    result = dict(config)
    # Legacy shapes (template_id, variables beside the template) are stored in the canonical one,
    # template: {id | alias, variables}, which is what the executor reads.
    if "template_id" in result:
        if "template" in result:
            raise InvalidInput('"template" or "template_id", not both', field=f"{at}.template_id")
        result["template"] = {
            "id": _uuid(result.pop("template_id"), f"{at}.template_id", "template_id")
        }
    else:
        result["template"] = _template(result.get("template"), f"{at}.template")
    if "variables" in result:
        if "variables" in result["template"]:
            raise InvalidInput(
                "variables given twice, inside and beside template", field=f"{at}.variables"
            )
        result["template"]["variables"] = _variables(result.pop("variables"), f"{at}.variables")
    if "from" in result:
        check_mailbox(result["from"], field=f"{at}.from", label="from")
    if "subject" in result:
        check_header_text(
            _text(result["subject"], f"{at}.subject", "subject"), f"{at}.subject", label="subject"
        )
    if "reply_to" in result:
        _check_reply_to(result["reply_to"], f"{at}.reply_to")
    return result


def _check_reply_to(value: object, at: str) -> None:
    """One sender-shaped address, or a list of them; an empty string means none."""
    if isinstance(value, str):
        if value:
            check_mailbox(value, field=at, label="reply_to")
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput("reply_to must be a string or a list of strings", field=at)
    if len(value) > MAX_REPLY_TO:
        raise InvalidInput(f"reply_to holds at most {MAX_REPLY_TO} addresses", field=at)
    for index, item in enumerate(value):
        check_mailbox(item, field=f"{at}[{index}]", label=f"reply_to[{index}]")


def _delay_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    only_keys(config, {"duration"}, at, "delay config")
    parse_duration(config.get("duration"), field=f"{at}.duration")
    return config


def _wait_for_event_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    only_keys(config, {"event_name", "timeout", "filter_rule"}, at, "wait_for_event config")
    _text(config.get("event_name"), f"{at}.event_name", "event_name", MAX_EVENT_NAME_LENGTH)
    if "timeout" in config:
        parse_duration(config["timeout"], field=f"{at}.timeout")
    if "filter_rule" in config:
        validate_rule(config["filter_rule"], field=f"{at}.filter_rule")
    return config


def _condition_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    if not config:
        raise InvalidInput('a condition needs a rule: {"rule": {...}} or the rule itself', field=at)
    if "rule" in config:
        only_keys(config, {"rule"}, at, "condition config")
        validate_rule(config["rule"], field=f"{at}.rule")
    else:
        validate_rule(config, field=at)
    return config


def _contact_update_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    keys = {*_CONTACT_FIELDS, "properties"}
    only_keys(config, keys, at, "contact_update config")
    if not config:
        raise InvalidInput(f"needs at least one of {', '.join(sorted(keys))}", field=at)
    for name, (literals, what) in _CONTACT_FIELDS.items():
        if name in config:
            validate_value(config[name], field=f"{at}.{name}", literals=literals, what=what)
    properties = config.get("properties", {})
    if not isinstance(properties, dict):
        raise InvalidInput("properties must be an object", field=f"{at}.properties")
    for name, value in properties.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput("property names must be non-empty strings", field=f"{at}.properties")
        validate_value(value, field=f"{at}.properties.{name}")
    return config


def _contact_delete_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    only_keys(config, (), at, "contact_delete config")
    return config


def _add_to_segment_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    only_keys(config, {"segment_id"}, at, "add_to_segment config")
    return {"segment_id": _uuid(config.get("segment_id"), f"{at}.segment_id", "segment_id")}


_CONFIG_CHECKS: dict[StepType, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    StepType.TRIGGER: _trigger_config,
    StepType.SEND_EMAIL: _send_email_config,
    StepType.DELAY: _delay_config,
    StepType.WAIT_FOR_EVENT: _wait_for_event_config,
    StepType.CONDITION: _condition_config,
    StepType.CONTACT_UPDATE: _contact_update_config,
    StepType.CONTACT_DELETE: _contact_delete_config,
    StepType.ADD_TO_SEGMENT: _add_to_segment_config,
}


def check_config(step_type: StepType, config: dict[str, Any], at: str) -> dict[str, Any]:
    """The config of a step of this type, validated and normalised; `at` prefixes error fields."""
    return _CONFIG_CHECKS[step_type](config, at)
