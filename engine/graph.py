"""Validate automation graphs and walk them: graph order, branches, steps no longer reachable."""

import copy
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Self

from engine.conditions import validate_rule
from engine.durations import parse_duration
from engine.errors import InvalidInput
from engine.variables import validate_value
from models.enums import CONNECTION_TYPES_BY_STEP, STEP_TYPE_ALIASES, ConnectionType, StepType

MAX_STEPS = 150
MAX_KEY_LENGTH = 100
MAX_EVENT_NAME_LENGTH = 255
_STEP_FIELDS = frozenset({"key", "type", "config"})
_CONNECTION_FIELDS = frozenset({"from", "to", "type"})
_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ADDRESS = r"[^\s@<>]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_SENDER = re.compile(rf"(?:[^<>]*<{_ADDRESS}>|{_ADDRESS})")
_CONTACT_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "first_name": ((str, type(None)), "a string or null"),
    "last_name": ((str, type(None)), "a string or null"),
    "unsubscribed": ((bool,), "a boolean"),
}
_STEP_TYPES: dict[str, StepType] = {t.value: t for t in StepType} | STEP_TYPE_ALIASES


@dataclass(frozen=True)
class Step:
    key: str
    type: StepType
    config: dict[str, Any]


@dataclass(frozen=True)
class Connection:
    from_key: str
    to_key: str
    type: ConnectionType


@dataclass(frozen=True)
class Graph:
    """An automation's steps and connections; immutable once validated."""

    steps: tuple[Step, ...]
    connections: tuple[Connection, ...]

    @cached_property
    def _by_key(self) -> dict[str, Step]:
        return {step.key: step for step in self.steps}

    @cached_property
    def _outgoing(self) -> dict[str, tuple[Connection, ...]]:
        return {k: tuple(c for c in self.connections if c.from_key == k) for k in self._by_key}

    @cached_property
    def _incoming(self) -> dict[str, tuple[Connection, ...]]:
        return {k: tuple(c for c in self.connections if c.to_key == k) for k in self._by_key}

    @property
    def trigger(self) -> Step:
        """The graph's single trigger step."""
        for step in self.steps:
            if step.type == StepType.TRIGGER:
                return step
        raise ValueError("the graph has no trigger step")

    @property
    def event_name(self) -> str:
        """The event that starts a run."""
        return str(self.trigger.config["event_name"])

    def step(self, key: str) -> Step:
        """The step with this key; KeyError if there is none."""
        return self._by_key[key]

    def outgoing(self, key: str) -> tuple[Connection, ...]:
        """Connections leaving the step, in declared order."""
        return self._outgoing.get(key, ())

    def incoming(self, key: str) -> tuple[Connection, ...]:
        """Connections entering the step, in declared order."""
        return self._incoming.get(key, ())

    def next_steps(self, key: str, branch: ConnectionType) -> list[str]:
        """Targets of the step's outgoing connections of one type, in declared order."""
        return [c.to_key for c in self.outgoing(key) if c.type == branch]

    def order(self) -> list[str]:
        """Breadth-first from the trigger following connections in declared order."""
        reached = self._reachable
        # Only unvalidated graphs have unreachable steps; keep them so the order is total.
        return [*reached, *(s.key for s in self.steps if s.key not in reached)]

    @cached_property
    def _reachable(self) -> dict[str, None]:
        start = self.trigger.key
        seen, queue = {start: None}, deque([start])
        while queue:
            for connection in self.outgoing(queue.popleft()):
                if connection.to_key not in seen:
                    seen[connection.to_key] = None
                    queue.append(connection.to_key)
        return seen

    def to_dict(self) -> dict[str, Any]:
        """The graph as plain JSON-ready data, as stored in a version."""
        return {
            "steps": [
                {"key": s.key, "type": str(s.type), "config": copy.deepcopy(s.config)}
                for s in self.steps
            ],
            "connections": [
                {"from": c.from_key, "to": c.to_key, "type": str(c.type)} for c in self.connections
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a graph from to_dict output, trusting that it was validated."""
        return cls(
            tuple(Step(s["key"], StepType(s["type"]), s["config"]) for s in data["steps"]),
            tuple(
                Connection(c["from"], c["to"], ConnectionType(c.get("type", "default")))
                for c in data["connections"]
            ),
        )


def dead_steps(
    graph: Graph, *, active: AbstractSet[str], taken: Mapping[str, ConnectionType | None]
) -> list[str]:
    """Undecided steps of a run in progress that no path can reach any more, in graph order."""
    # Undecided steps with incoming connections; the trigger has none and is never dead.
    undecided = [
        k for k in graph.order() if k not in active and k not in taken and graph.incoming(k)
    ]
    dead: set[str] = set()
    changed = True
    while changed:  # a fixed point: at most one round per step, and graphs are small
        changed = False
        for key in undecided:
            if key not in dead and all(
                c.from_key in dead or (c.from_key in taken and taken[c.from_key] != c.type)
                for c in graph.incoming(key)
            ):
                dead.add(key)
                changed = True
    return [key for key in undecided if key in dead]


def condition_rule(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The rule tree of a condition step, whether wrapped in {"rule": ...} or not."""
    rule = config.get("rule")
    return rule if isinstance(rule, Mapping) else config


def validate_graph(steps: object, connections: object) -> Graph:
    """Validate API input and build a Graph; InvalidInput names the first problem found."""
    parsed = _parse_steps(steps)
    _check_one_trigger(parsed)
    index = {step.key: i for i, step in enumerate(parsed)}
    checked = tuple(_checked_config(step, i) for i, step in enumerate(parsed))
    graph = Graph(checked, tuple(_parse_connections(connections, checked, index)))
    _check_reachable(graph, index)
    _check_acyclic(graph, index)
    return graph


def _label(key: str, index: int) -> str:
    return f'step "{key}" (steps[{index}])'


def _parse_steps(raw: object) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("steps must be a non-empty list of step objects", field="steps")
    if len(raw) > MAX_STEPS:
        raise InvalidInput(f"an automation has at most {MAX_STEPS} steps", field="steps")
    seen: dict[str, int] = {}
    parsed = []
    for index, item in enumerate(raw):
        step = _parse_step(item, index)
        if step.key in seen:
            raise InvalidInput(
                f"{_label(step.key, index)}: keys must be unique, "
                f'and steps[{seen[step.key]}] already uses "{step.key}"',
                field=f"steps[{index}].key",
            )
        seen[step.key] = index
        parsed.append(step)
    return parsed


def _parse_step(item: object, index: int) -> Step:
    at = f"steps[{index}]"
    if not isinstance(item, dict):
        raise InvalidInput(f"{at} must be an object with key, type and config", field=at)
    key = item.get("key")
    if not isinstance(key, str) or not _KEY.fullmatch(key) or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{at}: key must be a string of 1 to {MAX_KEY_LENGTH} characters "
            f"among letters, digits, '_', '.' and '-', got {key!r}",
            field=f"{at}.key",
        )
    label = _label(key, index)
    _only_keys(item, _STEP_FIELDS, at, label)
    raw_type = item.get("type")
    if not isinstance(raw_type, str) or raw_type not in _STEP_TYPES:
        raise InvalidInput(
            f"{label}: unknown step type {raw_type!r}; use one of {', '.join(StepType)}",
            field=f"{at}.type",
        )
    step_type = _STEP_TYPES[raw_type]
    config = item.get("config", {} if step_type == StepType.CONTACT_DELETE else None)
    if not isinstance(config, dict):
        raise InvalidInput(f'{label}: "config" must be an object', field=f"{at}.config")
    return Step(key, step_type, config)


def _check_one_trigger(steps: list[Step]) -> None:
    triggers = [i for i, step in enumerate(steps) if step.type == StepType.TRIGGER]
    if not triggers:
        raise InvalidInput("an automation needs exactly one trigger step", field="steps")
    if len(triggers) > 1:
        first, second = triggers[:2]
        raise InvalidInput(
            f"{_label(steps[second].key, second)}: an automation needs exactly one trigger step, "
            f'and "{steps[first].key}" (steps[{first}]) is one',
            field=f"steps[{second}].type",
        )


def _checked_config(step: Step, index: int) -> Step:
    """The step with its config validated and normalised; errors are prefixed with the step."""
    at = f"steps[{index}].config"
    try:
        config = _CONFIG_CHECKS[step.type](step.config, at)
    except InvalidInput as error:
        raise InvalidInput(
            f"{_label(step.key, index)}: {error.message}", field=error.field, code=error.code
        ) from None
    return Step(step.key, step.type, config)


def _only_keys(data: Mapping[str, Any], allowed: Iterable[str], at: str, what: str) -> None:
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
    _only_keys(config, {"event_name"}, at, "trigger config")
    _text(config.get("event_name"), f"{at}.event_name", "event_name", MAX_EVENT_NAME_LENGTH)
    return config


def _template(value: object, at: str) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value.keys() & {"id", "alias"}) != 1:
        raise InvalidInput('template needs exactly one of "id" or "alias"', field=at)
    _only_keys(value, {"id", "alias", "variables"}, at, "template")
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
    _only_keys(config, keys, at, "send_email config")
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
    sender = result.get("from")
    if "from" in result and not (isinstance(sender, str) and _SENDER.fullmatch(sender.strip())):
        raise InvalidInput('from must be "addr@domain" or "Name <addr@domain>"', field=f"{at}.from")
    if "subject" in result:
        _text(result["subject"], f"{at}.subject", "subject")
    reply_to = result.get("reply_to", "")
    if not isinstance(reply_to, str | list) or not all(isinstance(r, str) for r in reply_to):
        raise InvalidInput("reply_to must be a string or a list of strings", field=f"{at}.reply_to")
    return result


def _delay_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    _only_keys(config, {"duration"}, at, "delay config")
    parse_duration(config.get("duration"), field=f"{at}.duration")
    return config


def _wait_for_event_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    _only_keys(config, {"event_name", "timeout", "filter_rule"}, at, "wait_for_event config")
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
        _only_keys(config, {"rule"}, at, "condition config")
        validate_rule(config["rule"], field=f"{at}.rule")
    else:
        validate_rule(config, field=at)
    return config


def _contact_update_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    keys = {*_CONTACT_FIELDS, "properties"}
    _only_keys(config, keys, at, "contact_update config")
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
    _only_keys(config, (), at, "contact_delete config")
    return config


def _add_to_segment_config(config: dict[str, Any], at: str) -> dict[str, Any]:
    _only_keys(config, {"segment_id"}, at, "add_to_segment config")
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


def _parse_connections(
    raw: object, steps: tuple[Step, ...], index: Mapping[str, int]
) -> list[Connection]:
    if not isinstance(raw, list):
        raise InvalidInput("connections must be a list", field="connections")
    by_key = {step.key: step for step in steps}
    branches: dict[tuple[str, ConnectionType], int] = {}
    result = []
    for position, item in enumerate(raw):
        at = f"connections[{position}]"
        connection = _parse_connection(item, at, by_key)
        source = by_key[connection.from_key]
        label = f'{at}: step "{source.key}" ({source.type})'
        if (source.key, connection.type) in branches:
            earlier = branches[source.key, connection.type]
            raise InvalidInput(
                f'{label} already has a "{connection.type}" connection (connections[{earlier}]): '
                "a step has one successor per branch",
                field=at,
            )
        if connection.type == ConnectionType.TIMEOUT and "timeout" not in source.config:
            raise InvalidInput(
                f'{label} has a "timeout" connection but no config.timeout '
                f"(steps[{index[source.key]}].config.timeout)",
                field=f"{at}.type",
            )
        branches[source.key, connection.type] = position
        result.append(connection)
    return result


def _parse_connection(item: object, at: str, steps: Mapping[str, Step]) -> Connection:
    if not isinstance(item, dict):
        raise InvalidInput(f'{at} must be an object with "from", "to" and "type"', field=at)
    _only_keys(item, _CONNECTION_FIELDS, at, "connection")
    for end in ("from", "to"):
        if not isinstance(item.get(end), str):
            raise InvalidInput(f'{at}: "{end}" must be a step key', field=f"{at}.{end}")
        if item[end] not in steps:
            raise InvalidInput(f'{at}: step "{item[end]}" does not exist', field=f"{at}.{end}")
    source, target = steps[item["from"]], steps[item["to"]]
    raw_type = item.get("type", "default")
    if not isinstance(raw_type, str) or raw_type not in set(ConnectionType):
        allowed = ", ".join(ConnectionType)
        raise InvalidInput(
            f"{at}: unknown connection type {raw_type!r}; use {allowed}", field=f"{at}.type"
        )
    kind = ConnectionType(raw_type)
    if source.key == target.key:
        raise InvalidInput(f'{at}: step "{source.key}" cannot connect to itself', field=at)
    if target.type == StepType.TRIGGER:
        raise InvalidInput(
            f'{at}: nothing may connect into trigger "{target.key}"', field=f"{at}.to"
        )
    fits = CONNECTION_TYPES_BY_STEP[source.type]
    if kind not in fits:
        hint = "use " + " or ".join(f'"{t}"' for t in sorted(fits)) if fits else "it ends the run"
        raise InvalidInput(
            f'{at}: step "{source.key}" ({source.type}) cannot have a "{kind}" connection: {hint}',
            field=f"{at}.type",
        )
    return Connection(source.key, target.key, kind)


def _check_reachable(graph: Graph, index: Mapping[str, int]) -> None:
    unreachable = [s.key for s in graph.steps if s.key not in graph._reachable]
    if unreachable:
        names = ", ".join(f'"{k}" (steps[{index[k]}])' for k in unreachable)
        raise InvalidInput(
            f"every step must be reachable from the trigger; not reachable: {names}",
            field=f"steps[{index[unreachable[0]]}]",
        )


def _check_acyclic(graph: Graph, index: Mapping[str, int]) -> None:
    done: set[str] = set()
    path: list[str] = []

    def visit(key: str) -> None:
        if key in path:
            cycle = " -> ".join([*path[path.index(key) :], key])
            raise InvalidInput(
                f"{_label(key, index[key])} is on a cycle ({cycle}); an automation cannot loop",
                field=f"steps[{index[key]}]",
            )
        if key in done:
            return
        path.append(key)
        for connection in graph.outgoing(key):
            visit(connection.to_key)
        path.pop()
        done.add(key)

    visit(graph.trigger.key)
