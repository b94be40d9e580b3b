"""The vocabulary step configs are checked with, and the check of a step's config by its type.

Each step type's own check lives in its module in engine/steps/ and is named by its spec."""

import re
from collections.abc import Iterable, Mapping
from typing import Any

from engine.errors import InvalidInput
from engine.step_types import spec_for

MAX_EVENT_NAME_LENGTH = 255
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def only_keys(data: Mapping[str, Any], allowed: Iterable[str], at: str, what: str) -> None:
    """Refuse a key not in `allowed`, naming the ones that are."""
    names = sorted(allowed)
    for name in data:
        if name not in names:
            hint = f"allowed keys are {', '.join(names)}" if names else "it takes none"
            raise InvalidInput(f"unknown key {name!r} in {what}: {hint}", field=f"{at}.{name}")


def required_text(value: object, at: str, what: str, max_length: int | None = None) -> str:
    """A non-empty string of at most `max_length` characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string", field=at)
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(f"{what} must be at most {max_length} characters", field=at)
    return value


def uuid_text(value: object, at: str, what: str) -> str:
    """A UUID string, in lower case."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise InvalidInput(f"{what} must be a UUID string, got {value!r}", field=at)
    # Lower case, as str(uuid.UUID(...)) writes it, so stored ids compare equal.
    return value.lower()


def event_name_config(config: dict[str, Any], at: str) -> None:
    """The `event_name` a trigger or a wait listens for."""
    required_text(config.get("event_name"), f"{at}.event_name", "event_name", MAX_EVENT_NAME_LENGTH)


def check_config(step_type: str, config: dict[str, Any], at: str) -> dict[str, Any]:
    """The config of a step of this type, validated and normalised; `at` prefixes error fields."""
    return spec_for(step_type).check_config(config, at)
