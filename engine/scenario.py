"""What a simulation plays: an automation, a contact, the trigger event and events that come later.

Pure: it checks the request's shape and names the field of the first problem; the rules of the
things themselves (the graph, an email address, a payload's schema) are the engine's own checks.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.durations import format_duration, parse_duration
from engine.errors import InvalidInput
from engine.graph import Graph, validate_graph
from engine.stored_text import check_text

# Virtual time one simulation covers at most; `after` and `until` are counted within it.
MAX_SPAN = timedelta(days=365)
MAX_LATER_EVENTS = 100
REQUEST_FIELDS = ("automation", "automation_id", "contact", "event", "events", "until")
# An automation file as `automations apply` takes it: name, status and id are not simulated.
AUTOMATION_FIELDS = ("id", "name", "status", "steps", "connections")
CONTACT_FIELDS = ("id", "email", "first_name", "last_name", "unsubscribed", "properties")
_LATER = re.compile(
    r"\s*(?P<name>\S+)\s+after\s+(?P<after>\S+\s+\S+)(?:\s+(?P<payload>\S.*))?", re.DOTALL
)


@dataclass(frozen=True)
class ContactSpec:
    """The contact: a stored one (by `stored_id`, or by its email) with the given fields over
    it, or a new one with the given fields."""

    stored_id: uuid.UUID | None
    fields: dict[str, Any]


@dataclass(frozen=True)
class LaterEvent:
    index: int  # its place in the request's `events`, for error messages
    name: str
    after: timedelta
    payload: dict[str, Any]

    @property
    def field(self) -> str:
        return f"events[{self.index}]"


@dataclass(frozen=True)
class Scenario:
    graph: Graph | None  # None: the current version of `automation_id`
    automation_id: uuid.UUID | None
    contact: ContactSpec
    event_name: str | None  # None: the trigger's event
    payload: dict[str, Any]
    events: tuple[LaterEvent, ...]  # in the order they arrive
    until: timedelta | None  # None: until the run ends


@contextmanager
def within(prefix: str) -> Iterator[None]:
    """Re-raise an InvalidInput from inside a part of the request with the part's path."""
    try:
        yield
    except InvalidInput as error:
        inner = error.field
        field = f"{prefix}.{inner}" if inner else prefix
        message = error.message
        if inner and message.startswith(f"`{inner}`"):
            message = f"`{field}`{message[len(inner) + 2 :]}"
        else:
            message = f"`{prefix}`: {message}"
        raise InvalidInput(message, field=field, code=error.code) from None


def _object(value: object, field: str, *, optional: bool = False) -> dict[str, Any]:
    """The value if it is a JSON object; with `optional`, null stands for an empty one."""
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"`{field}` must be an object", field=field)
    return value


def _known(value: dict[str, Any], allowed: tuple[str, ...], field: str) -> None:
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        where = f"{field}.{unknown[0]}" if field else unknown[0]
        raise InvalidInput(
            f"`{where}` is not a known field (expected {', '.join(allowed)})", field=where
        )


def _text(value: object, field: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise InvalidInput(
            f"`{field}` must be a non-empty string of at most 255 characters", field=field
        )
    check_text(value, field)
    return value


def _uuid(value: object, field: str) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidInput(
        f"The `{field}` must be a valid UUID.", field=field, code="invalid_parameter"
    )


def _span(value: object, field: str) -> timedelta:
    try:
        return parse_duration(value, field=field, maximum=MAX_SPAN)
    except InvalidInput as error:
        raise InvalidInput(f"`{field}`: {error.message}", field=field) from None


def parse_scenario(body: Mapping[str, Any]) -> Scenario:
    """Check a simulation request; InvalidInput names the field of the first problem."""
    if not isinstance(body, Mapping):
        raise InvalidInput("The request body must be a JSON object", field="body")
    request = dict(body)
    _known(request, REQUEST_FIELDS, "")
    graph, automation_id = _automation(request.get("automation"), request.get("automation_id"))
    if request.get("contact") is None:
        raise InvalidInput(
            "Missing `contact` field.", field="contact", code="missing_required_field"
        )
    event = _object(request.get("event"), "event", optional=True)
    _known(event, ("name", "payload"), "event")
    payload = _object(event.get("payload"), "event.payload", optional=True)
    until = _span(request["until"], "until") if request.get("until") is not None else None
    events = _later_events([] if request.get("events") is None else request["events"], until)
    return Scenario(
        graph=graph,
        automation_id=automation_id,
        contact=_contact(request["contact"]),
        event_name=_text(event.get("name"), "event.name", optional=True),
        payload=payload,
        events=events,
        until=until,
    )


def _automation(value: object, automation_id: object) -> tuple[Graph | None, uuid.UUID | None]:
    if (value is None) == (automation_id is None):
        raise InvalidInput(
            "Give exactly one of `automation` (steps and connections) or `automation_id`",
            field="automation",
        )
    if automation_id is not None:
        return None, _uuid(automation_id, "automation_id")
    automation = _object(value, "automation")
    _known(automation, AUTOMATION_FIELDS, "automation")
    with within("automation"):
        return validate_graph(automation.get("steps"), automation.get("connections")), None


def _contact(value: object) -> ContactSpec:
    contact = _object(value, "contact")
    _known(contact, CONTACT_FIELDS, "contact")
    stored = _uuid(contact["id"], "contact.id") if contact.get("id") is not None else None
    if stored is None and not isinstance(contact.get("email"), str):
        raise InvalidInput(
            "`contact.email` must be an email address (or give `contact.id`)", field="contact.email"
        )
    fields = {k: v for k, v in contact.items() if k != "id"}
    for name in ("first_name", "last_name"):
        if name in fields:
            _text(fields[name], f"contact.{name}", optional=True)
    if "unsubscribed" in fields and not isinstance(fields["unsubscribed"], bool):
        raise InvalidInput(
            "`contact.unsubscribed` must be true or false", field="contact.unsubscribed"
        )
    if "properties" in fields:
        fields["properties"] = _object(fields["properties"], "contact.properties", optional=True)
    return ContactSpec(stored, fields)


def _later_events(value: object, until: timedelta | None) -> tuple[LaterEvent, ...]:
    if not isinstance(value, list):
        raise InvalidInput("`events` must be a list of events", field="events")
    if len(value) > MAX_LATER_EVENTS:
        raise InvalidInput(f"`events` has at most {MAX_LATER_EVENTS} events", field="events")
    events = []
    for index, item in enumerate(value):
        at = f"events[{index}]"
        event = _object(item, at)
        _known(event, ("name", "after", "payload"), at)
        name = _text(event.get("name"), f"{at}.name")
        after = _span(event.get("after"), f"{at}.after")
        if until is not None and after > until:
            raise InvalidInput(
                f"`{at}.after` is {format_duration(after)}, later than `until` "
                f"({format_duration(until)}): the simulation would stop before it",
                field=f"{at}.after",
            )
        payload = _object(event.get("payload"), f"{at}.payload", optional=True)
        events.append(LaterEvent(index, str(name), after, payload))
    # Equal offsets keep the order given: the event listed first arrives first.
    return tuple(sorted(events, key=lambda e: (e.after, e.index)))


def parse_later_event(text: str) -> dict[str, Any]:
    """`user.paid after 2 days {"plan": "pro"}` as a later event of a simulation request.

    The messages of its InvalidInput name no field: the caller says where the text came from.
    """
    match = _LATER.fullmatch(text)
    if match is None:
        raise InvalidInput(
            "write `NAME after DURATION [PAYLOAD]`, e.g. 'user.paid after 2 days {\"plan\": 1}'"
        )
    event: dict[str, Any] = {"name": match["name"], "after": match["after"]}
    parse_duration(event["after"], maximum=MAX_SPAN)
    if match["payload"] is not None:
        try:
            payload = json.loads(match["payload"])
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"the payload is not valid JSON: {exc.msg}") from None
        except RecursionError:  # json recurses once per level: a hostile payload ends it
            raise InvalidInput("the payload is nested too deeply") from None
        if not isinstance(payload, dict):
            raise InvalidInput('the payload must be a JSON object, e.g. {"plan": "pro"}')
        event["payload"] = payload
    return event
