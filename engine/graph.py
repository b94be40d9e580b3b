"""Validate automation graphs and walk them: graph order, branches, steps no longer reachable."""

import copy
import json
import re
import uuid
from collections import deque
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Self

from engine.errors import InvalidInput
from engine.json_limits import JsonLimits
from engine.step_configs import check_config, only_keys
from engine.step_types import all_specs, find, spec_for
from models.enums import ConnectionType, StepType

MAX_STEPS = 150
STEP_CONFIG_LIMITS = JsonLimits()
MAX_KEY_LENGTH = 100
_STEP_FIELDS = frozenset({"key", "type", "config"})
_CONNECTION_FIELDS = frozenset({"from", "to", "type"})
_KEY = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Step:
    key: str
    # A registered step type's name (engine/step_types.py).
    type: str
    config: dict[str, Any]

    @cached_property
    def reads_wait_events(self) -> bool:
        """Whether the config mentions `wait_events` (only such a step pays for reading them)."""
        return "wait_events" in json.dumps(self.config)


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
    # The automation version it was read from (Runtime.graph); None for one being validated.
    version_id: uuid.UUID | None = field(default=None, compare=False)

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
    def from_dict(cls, data: Mapping[str, Any], *, version_id: uuid.UUID | None = None) -> Self:
        """Rebuild a graph from to_dict output, trusting that it was validated."""
        return cls(
            tuple(Step(s["key"], s["type"], s["config"]) for s in data["steps"]),
            tuple(
                Connection(c["from"], c["to"], ConnectionType(c.get("type", "default")))
                for c in data["connections"]
            ),
            version_id,
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
    only_keys(item, _STEP_FIELDS, at, label)
    raw_type = item.get("type")
    spec = find(raw_type) if isinstance(raw_type, str) else None
    if spec is None:
        names = ", ".join(s.name for s in all_specs())
        raise InvalidInput(
            f"{label}: unknown step type {raw_type!r}; use one of {names}", field=f"{at}.type"
        )
    config = item.get("config", None if spec.config_required else {})
    if not isinstance(config, dict):
        raise InvalidInput(f'{label}: "config" must be an object', field=f"{at}.config")
    return Step(key, spec.name, config)


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
        # A condition's `value` is free JSON: bounded like an event's payload, so it comes back.
        STEP_CONFIG_LIMITS.check(step.config, field=at)
        config = check_config(step.type, step.config, at)
    except InvalidInput as error:
        raise InvalidInput(
            f"{_label(step.key, index)}: {error.message}", field=error.field, code=error.code
        ) from None
    return Step(step.key, step.type, config)


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
    only_keys(item, _CONNECTION_FIELDS, at, "connection")
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
    fits = spec_for(source.type).connection_types
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
