"""Resolve variable references such as {"var": "event.user.name"} against a run's context."""

from collections.abc import Collection, Mapping
from typing import Any

from engine.errors import InvalidInput, StepFailure

ROOTS = ("event", "contact", "wait_events")
# What a step config may hold where a variable may also go: JSON scalars.
LITERALS: tuple[type, ...] = (str, int, float, bool, type(None))


class MissingField(StepFailure):
    """A referenced field does not exist in the run's data."""

    code = "missing_field"

    def __init__(self, field: str) -> None:
        super().__init__(f"Field `{field}` does not exist")
        self.field = field


def validate_reference(path: object, *, field: str) -> str:
    """Check that a variable reference is well formed and return it."""
    if not isinstance(path, str) or not path:
        raise InvalidInput(
            f"a variable reference must be a non-empty string, got {path!r}", field=field
        )
    segments = path.split(".")
    root = segments[0]
    if root not in ROOTS:
        allowed = ", ".join(f"{r}.<path>" for r in ROOTS)
        raise InvalidInput(
            f"variable reference {path!r} must start with one of: {allowed}", field=field
        )
    if any(segment == "" for segment in segments):
        raise InvalidInput(f"variable reference {path!r} has an empty segment", field=field)
    needed = 3 if root == "wait_events" else 2
    if len(segments) < needed:
        shape = "wait_events.<event name>.<key>" if root == "wait_events" else f"{root}.<key>"
        raise InvalidInput(f"variable reference {path!r} must have the form {shape}", field=field)
    return path


def validate_value(
    value: object, *, field: str, literals: tuple[type, ...] = LITERALS, what: str = "a literal"
) -> None:
    """Check that a value is one of the allowed literals or a valid reference."""
    if isinstance(value, dict) and is_reference(value):
        validate_reference(value["var"], field=f"{field}.var")
    elif not isinstance(value, literals):
        name = field.rsplit(".", 1)[-1]
        raise InvalidInput(
            f'{name} must be {what} or a reference {{"var": "event.<path>"}}', field=field
        )


def _step(node: Any, segment: str, path: str) -> Any:
    """Descend one segment: a key of a dict, or an index of a list."""
    if isinstance(node, Mapping):
        if segment in node:
            return node[segment]
        raise MissingField(path)
    if isinstance(node, list) and segment.isascii() and segment.isdigit():
        # More digits than the list's length has cannot be an index in it (and thousands of
        # digits are more than int() converts).
        digits = segment.lstrip("0") or "0"
        if len(digits) <= len(str(len(node))) and int(digits) < len(node):
            return node[int(digits)]
    raise MissingField(path)


def _wait_event_start(
    context: Mapping[str, Any], segments: list[str], path: str
) -> tuple[Any, int]:
    """The payload of the longest event name matching the leading segments, and where it ends."""
    events = context.get("wait_events")
    if not isinstance(events, Mapping):
        raise MissingField(path)
    # Event names contain dots, so try the longest prefix first; keep one segment for the key.
    for end in range(len(segments) - 1, 1, -1):
        name = ".".join(segments[1:end])
        if name in events:
            return events[name], end
    raise MissingField(path)


def resolve_path(context: Mapping[str, Any], path: str) -> Any:
    """Walk a dotted path through the context; a missing segment raises MissingField."""
    segments = path.split(".")
    if segments[0] == "wait_events" and len(segments) >= 3:
        node, start = _wait_event_start(context, segments, path)
    else:
        node, start = context, 0
    for segment in segments[start:]:
        node = _step(node, segment, path)
    return node


def is_reference(value: object) -> bool:
    """True for {"var": "<path>"}, the only shape that is not a literal."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("var"), str)


def resolve_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve a reference; return a literal unchanged."""
    if is_reference(value):
        return resolve_path(context, value["var"])
    return value


def resolve_variables(
    spec: Mapping[str, Any],
    context: Mapping[str, Any],
    fallbacks: Mapping[str, Any],
    optional: Collection[str] = (),
) -> dict[str, Any]:
    """Resolve every entry, using the fallback of a key whose field is missing; an `optional`
    key whose field is missing is left out."""
    resolved: dict[str, Any] = {}
    for key, value in spec.items():
        try:
            resolved[key] = resolve_value(value, context)
        except MissingField:
            if key in fallbacks:
                resolved[key] = fallbacks[key]
            elif key not in optional:
                raise
    return resolved
