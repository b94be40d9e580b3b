import copy
import itertools
from typing import Any

import pytest

from engine.errors import InvalidInput
from engine.graph import (
    Connection,
    Graph,
    Step,
    condition_rule,
    dead_steps,
    validate_graph,
)
from engine.step_types import spec_for
from models.enums import ConnectionType, StepType

C = ConnectionType
TEMPLATE_ID = "0b9a4ad1-37a2-4d7b-9f1e-3c5a7f2e8d10"
SEGMENT_ID = "6F1C2A3B-4D5E-4F60-8A9B-0C1D2E3F4A5B"
RULE = {"field": "event.plan", "operator": "eq", "value": "pro"}


def trigger(key: str = "start", event: str = "user.created") -> dict[str, Any]:
    return {"key": key, "type": "trigger", "config": {"event_name": event}}


def email(key: str, **config: Any) -> dict[str, Any]:
    return {"key": key, "type": "send_email", "config": {"template": {"id": TEMPLATE_ID}, **config}}


def delay(key: str, duration: str = "1 hour") -> dict[str, Any]:
    return {"key": key, "type": "delay", "config": {"duration": duration}}


def condition(key: str, config: Any = None) -> dict[str, Any]:
    return {"key": key, "type": "condition", "config": {"rule": RULE} if config is None else config}


def wait(key: str, **config: Any) -> dict[str, Any]:
    return {
        "key": key,
        "type": "wait_for_event",
        "config": {"event_name": "payment.completed", **config},
    }


def step(key: str, type_: str, config: Any) -> dict[str, Any]:
    return {"key": key, "type": type_, "config": config}


def link(a: str, b: str, type_: str | None = None) -> dict[str, Any]:
    connection = {"from": a, "to": b}
    if type_ is not None:
        connection["type"] = type_
    return connection


def chain(*steps: dict[str, Any]) -> list[dict[str, Any]]:
    return [link(a["key"], b["key"]) for a, b in itertools.pairwise(steps)]


def invalid(steps: object, connections: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        validate_graph(steps, connections)
    return caught.value


def branchy() -> Graph:
    """start -> check; met -> vip -> merge; not met -> wait; received -> merge; timeout -> nudge."""
    steps = [
        trigger(),
        condition("check"),
        email("vip"),
        wait("wait", timeout="3 days"),
        email("nudge"),
        delay("merge"),
        email("final"),
    ]
    connections = [
        link("start", "check"),
        link("check", "vip", "condition_met"),
        link("check", "wait", "condition_not_met"),
        link("vip", "merge"),
        link("wait", "merge", "event_received"),
        link("wait", "nudge", "timeout"),
        link("merge", "final"),
    ]
    return validate_graph(steps, connections)


# --- valid graphs and the Graph API ---------------------------------------------------------


def test_minimal_graph() -> None:
    graph = validate_graph([trigger()], [])
    assert graph.trigger == Step("start", StepType.TRIGGER, {"event_name": "user.created"})
    assert graph.event_name == "user.created"
    assert graph.order() == ["start"]
    assert graph.connections == ()


def test_every_step_type_is_accepted() -> None:
    steps = [
        trigger(),
        email("mail", variables={"NAME": {"var": "contact.first_name"}, "N": 1}),
        delay("pause", "2 days"),
        wait(
            "paid",
            timeout="1 week",
            filter_rule={"field": "event.amount", "operator": "gt", "value": 0},
        ),
        condition("check"),
        step(
            "update",
            "contact_update",
            {"first_name": "Ada", "properties": {"plan": {"var": "event.plan"}}},
        ),
        step("segment", "add_to_segment", {"segment_id": SEGMENT_ID}),
        step("delete", "contact_delete", {}),
    ]
    connections = [
        link("start", "mail"),
        link("mail", "pause", "default"),
        link("pause", "paid"),
        link("paid", "check", "event_received"),
        link("check", "update", "condition_met"),
        link("update", "segment"),
        link("segment", "delete"),
    ]
    graph = validate_graph(steps, connections)
    assert [s.type for s in graph.steps] == [
        StepType.TRIGGER,
        StepType.SEND_EMAIL,
        StepType.DELAY,
        StepType.WAIT_FOR_EVENT,
        StepType.CONDITION,
        StepType.CONTACT_UPDATE,
        StepType.ADD_TO_SEGMENT,
        StepType.CONTACT_DELETE,
    ]
    assert graph.step("segment").config == {"segment_id": SEGMENT_ID.lower()}
    assert graph.connections[1] == Connection("mail", "pause", C.DEFAULT)


def test_alias_update_contact_is_stored_as_contact_update() -> None:
    steps = [trigger(), step("u", "update_contact", {"unsubscribed": True})]
    graph = validate_graph(steps, [link("start", "u")])
    assert graph.step("u").type == StepType.CONTACT_UPDATE
    assert graph.to_dict()["steps"][1]["type"] == "contact_update"


def test_contact_delete_config_may_be_omitted() -> None:
    steps = [trigger(), {"key": "bye", "type": "contact_delete"}]
    graph = validate_graph(steps, [link("start", "bye")])
    assert graph.step("bye").config == {}


def test_legacy_template_id_is_normalised() -> None:
    steps = [
        trigger(),
        step("mail", "send_email", {"template_id": TEMPLATE_ID.upper(), "subject": "Hi"}),
    ]
    graph = validate_graph(steps, [link("start", "mail")])
    assert graph.step("mail").config == {"template": {"id": TEMPLATE_ID}, "subject": "Hi"}


def test_send_email_optional_fields() -> None:
    variables = {"A": "x", "B": 1, "C": 2.5, "D": True, "E": None, "F": {"var": "event.a"}}
    config = {
        "template": {"alias": "welcome", "variables": variables},
        "from": "Acme <hello@acme.test>",
        "subject": "Welcome",
        "reply_to": ["a@acme.test", "b@acme.test"],
    }
    graph = validate_graph([trigger(), step("m", "send_email", config)], [link("start", "m")])
    assert graph.step("m").config == config
    steps = [trigger(), email("m", reply_to="a@acme.test", **{"from": "x@y.z"})]
    validate_graph(steps, [link("start", "m")])


def test_variables_beside_the_template_move_into_it() -> None:
    variables = {"NAME": {"var": "contact.first_name"}}
    config = {"template_id": TEMPLATE_ID, "variables": variables}
    graph = validate_graph([trigger(), step("m", "send_email", config)], [link("start", "m")])
    assert graph.step("m").config == {"template": {"id": TEMPLATE_ID, "variables": variables}}
    graph = validate_graph([trigger(), email("m", variables=variables)], [link("start", "m")])
    assert graph.step("m").config["template"] == {"id": TEMPLATE_ID, "variables": variables}


def test_validation_does_not_change_the_input() -> None:
    steps = [trigger(), email("m", variables={"A": "x"})]
    before = copy.deepcopy(steps)
    validate_graph(steps, [link("start", "m")])
    assert steps == before


def test_condition_accepts_the_bare_rule_and_the_wrapped_one() -> None:
    group = {"type": "or", "rules": [RULE, {"field": "contact.x", "operator": "exists"}]}
    for config in ({"rule": group}, group, {"rule": RULE}, RULE):
        graph = validate_graph([trigger(), condition("c", config)], [link("start", "c")])
        assert condition_rule(graph.step("c").config) == config.get("rule", config)


def test_navigation() -> None:
    graph = branchy()
    assert graph.step("wait").type == StepType.WAIT_FOR_EVENT
    with pytest.raises(KeyError):
        graph.step("nope")
    assert [c.to_key for c in graph.outgoing("check")] == ["vip", "wait"]
    assert [c.from_key for c in graph.incoming("merge")] == ["vip", "wait"]
    assert graph.incoming("start") == ()
    assert graph.outgoing("final") == ()
    assert graph.next_steps("check", C.CONDITION_MET) == ["vip"]
    assert graph.next_steps("check", C.CONDITION_NOT_MET) == ["wait"]
    assert graph.next_steps("check", C.DEFAULT) == []
    assert graph.next_steps("wait", C.TIMEOUT) == ["nudge"]
    assert graph.next_steps("merge", C.DEFAULT) == ["final"]


def test_order_is_breadth_first_in_declared_order() -> None:
    assert branchy().order() == ["start", "check", "vip", "wait", "merge", "nudge", "final"]


def test_order_returns_a_fresh_list() -> None:
    graph = branchy()
    graph.order().clear()
    assert len(graph.order()) == 7


def test_to_dict_round_trip() -> None:
    graph = branchy()
    data = graph.to_dict()
    assert data["connections"][0] == {"from": "start", "to": "check", "type": "default"}
    assert data["steps"][0] == {
        "key": "start",
        "type": "trigger",
        "config": {"event_name": "user.created"},
    }
    assert all(type(s["type"]) is str for s in data["steps"])
    assert all(type(c["type"]) is str for c in data["connections"])
    rebuilt = Graph.from_dict(copy.deepcopy(data))
    assert rebuilt == graph
    assert rebuilt.to_dict() == data
    assert validate_graph(data["steps"], data["connections"]) == graph


def test_to_dict_does_not_share_configs() -> None:
    graph = branchy()
    graph.to_dict()["steps"][0]["config"]["event_name"] = "changed"
    assert graph.event_name == "user.created"


def test_graph_is_frozen() -> None:
    graph = branchy()
    with pytest.raises(AttributeError):
        graph.steps = ()  # type: ignore[misc]


# --- rule 1: the steps list -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "field", "words"),
    [
        (None, "steps", "non-empty list"),
        ({"key": "start"}, "steps", "non-empty list"),
        ([], "steps", "non-empty list"),
        ([trigger()] + [delay(f"d{i}") for i in range(150)], "steps", "at most 150 steps"),
        ([trigger(), "delay"], "steps[1]", "must be an object"),
        ([trigger(), {"type": "delay", "config": {}}], "steps[1].key", "key must be a string"),
        ([trigger(), delay("")], "steps[1].key", "key must be a string"),
        ([trigger(), delay("has space")], "steps[1].key", "key must be a string"),
        ([trigger(), delay("é")], "steps[1].key", "key must be a string"),
        ([trigger(), delay("x" * 101)], "steps[1].key", "1 to 100 characters"),
        ([trigger(), {**delay("d"), "next": "x"}], "steps[1].next", "unknown key 'next'"),
        ([trigger(), step("d", "sleep", {})], "steps[1].type", "unknown step type 'sleep'"),
        ([trigger(), {"key": "d", "config": {}}], "steps[1].type", "unknown step type None"),
        (
            [trigger(), {"key": "d", "type": "delay"}],
            "steps[1].config",
            '"config" must be an object',
        ),
        ([trigger(), step("d", "delay", None)], "steps[1].config", '"config" must be an object'),
        ([trigger(), step("d", "delay", [])], "steps[1].config", '"config" must be an object'),
        ([trigger(), delay("d"), delay("d")], "steps[2].key", "keys must be unique"),
    ],
)
def test_bad_steps(steps: object, field: str, words: str) -> None:
    error = invalid(steps, [])
    assert error.field == field
    assert words in error.message
    if field.startswith("steps["):
        assert field.split(".")[0] in error.message


def test_150_steps_are_allowed() -> None:
    steps = [trigger()] + [delay(f"d{i}") for i in range(149)]
    graph = validate_graph(steps, chain(*steps))
    assert len(graph.order()) == 150


def test_duplicate_key_names_both_steps() -> None:
    error = invalid([trigger(), delay("d"), delay("d")], [])
    assert (
        error.message == 'step "d" (steps[2]): keys must be unique, and steps[1] already uses "d"'
    )


def test_unknown_key_names_the_step() -> None:
    error = invalid([trigger(), {**delay("wait1"), "next": "x"}], [])
    assert 'step "wait1" (steps[1])' in error.message


# --- rule 2: exactly one trigger ------------------------------------------------------------


def test_no_trigger() -> None:
    error = invalid([delay("d")], [])
    assert error.field == "steps"
    assert "exactly one trigger" in error.message


def test_two_triggers() -> None:
    error = invalid([trigger("a"), delay("d"), trigger("b")], [])
    assert error.field == "steps[2].type"
    assert 'step "b" (steps[2])' in error.message
    assert "exactly one trigger" in error.message
    assert '"a" (steps[0])' in error.message


def test_trigger_is_checked_before_configs() -> None:
    error = invalid([delay("d", "forever")], [])
    assert "exactly one trigger" in error.message


# --- rule 3: per-type configs ---------------------------------------------------------------

BAD_CONFIGS = [
    # send_email
    (step("s", "send_email", {}), "template", 'exactly one of "id" or "alias"'),
    (step("s", "send_email", {"template": "welcome"}), "template", 'exactly one of "id"'),
    (step("s", "send_email", {"template": {}}), "template", 'exactly one of "id"'),
    (
        step("s", "send_email", {"template": {"id": TEMPLATE_ID, "alias": "a"}}),
        "template",
        "exactly one",
    ),
    (step("s", "send_email", {"template": {"id": "123"}}), "template.id", "must be a UUID"),
    (step("s", "send_email", {"template": {"id": 5}}), "template.id", "must be a UUID"),
    (step("s", "send_email", {"template": {"alias": ""}}), "template.alias", "non-empty string"),
    (
        step("s", "send_email", {"template": {"alias": "a", "v": 2}}),
        "template.v",
        "unknown key 'v'",
    ),
    (step("s", "send_email", {"template_id": "nope"}), "template_id", "must be a UUID"),
    (
        step("s", "send_email", {"template_id": TEMPLATE_ID, "template": {"id": TEMPLATE_ID}}),
        "template_id",
        "not both",
    ),
    (email("s", html="<p>"), "html", "unknown key 'html'"),
    (email("s", variables=[]), "variables", "must be an object"),
    (
        step("s", "send_email", {"template": {"id": TEMPLATE_ID, "variables": {"A": [1]}}}),
        "template.variables.A",
        "literal",
    ),
    (
        step(
            "s", "send_email", {"template": {"alias": "a", "variables": {"A": 1}}, "variables": {}}
        ),
        "variables",
        "variables given twice",
    ),
    (email("s", variables={"first-name": "x"}), "variables.first-name", "must match"),
    (email("s", variables={"1A": "x"}), "variables.1A", "must match"),
    (
        email("s", variables={"RESEND_UNSUBSCRIBE_URL": "https://evil.test"}),
        "variables.RESEND_UNSUBSCRIBE_URL",
        "reserved",
    ),
    (email("s", variables={"A": [1]}), "variables.A", "literal"),
    (email("s", variables={"A": {"x": 1}}), "variables.A", "literal"),
    (
        email("s", variables={"A": {"var": "user.name"}}),
        "variables.A.var",
        "must start with one of",
    ),
    (
        email("s", variables={"A": {"var": "wait_events.x"}}),
        "variables.A.var",
        "wait_events.<event name>",
    ),
    (email("s", **{"from": "nobody"}), "from", "email address"),
    (email("s", **{"from": "A <b>"}), "from", "email address"),
    (email("s", **{"from": 3}), "from", "email address"),
    (email("s", **{"from": "a@acme.test, b@evil.test"}), "from", "not a list"),
    (email("s", **{"from": "Acme <a@acme.test>\r\nBcc: b@evil.test"}), "from", "line breaks"),
    (email("s", subject="Hi\r\nBcc: b@evil.test"), "subject", "carriage return"),
    (email("s", reply_to="a@acme.test, b@evil.test"), "reply_to", "not a list"),
    (email("s", **{"from": "N" * 320 + " <a@acme.test>"}), "from", "at most 320 characters"),
    (email("s", reply_to=["a@acme.test", "b@"]), "reply_to[1]", "domain"),
    (email("s", subject=""), "subject", "non-empty string"),
    (email("s", subject=None), "subject", "non-empty string"),
    (email("s", reply_to=3), "reply_to", "string or a list of strings"),
    (email("s", reply_to=["a@b.c", 3]), "reply_to", "string or a list of strings"),
    # delay
    (step("d", "delay", {}), "duration", "is not a duration"),
    (delay("d", "3 dayz"), "duration", "is not a duration"),
    (delay("d", "0 days"), "duration", "must be positive"),
    (delay("d", "5 weeks"), "duration", "maximum of 30 days"),
    (step("d", "delay", {"duration": "1 day", "until": "x"}), "until", "unknown key 'until'"),
    # wait_for_event
    (step("w", "wait_for_event", {}), "event_name", "non-empty string"),
    (wait("w", timeout="2 months"), "timeout", "is not a duration"),
    (wait("w", timeout="31 days"), "timeout", "maximum of 30 days"),
    (
        wait("w", filter_rule={"field": "amount", "operator": "eq", "value": 1}),
        "filter_rule.field",
        "start with",
    ),
    (
        wait("w", filter_rule={"field": "event.a", "operator": "is"}),
        "filter_rule.operator",
        "unknown operator",
    ),
    (wait("w", until="x"), "until", "unknown key 'until'"),
    # condition
    (condition("c", {}), "", "needs a rule"),
    (condition("c", {"rule": RULE, "else": 1}), "else", "unknown key 'else'"),
    (condition("c", {"rule": {"type": "and", "rules": []}}), "rule.rules", 'non-empty "rules"'),
    (condition("c", {"rule": {**RULE, "operator": "~"}}), "rule.operator", "unknown operator"),
    (condition("c", {**RULE, "operator": "~"}), "operator", "unknown operator"),
    (condition("c", {"field": "event.a", "operator": "eq"}), "value", 'needs a "value"'),
    (condition("c", {"type": "and", "rules": [RULE, {"x": 1}]}), "rules[1].x", "unknown key 'x'"),
    (condition("c", {"type": "not", "rules": [RULE]}), "type", "unknown rule type"),
    # contact_update
    (step("u", "contact_update", {}), "", "at least one of"),
    (step("u", "contact_update", {"email": "x"}), "email", "unknown key 'email'"),
    (step("u", "contact_update", {"first_name": 3}), "first_name", "string or null"),
    (step("u", "contact_update", {"last_name": ["x"]}), "last_name", "string or null"),
    (
        step("u", "contact_update", {"last_name": {"var": "nope"}}),
        "last_name.var",
        "must start with",
    ),
    (step("u", "contact_update", {"unsubscribed": "yes"}), "unsubscribed", "boolean"),
    (step("u", "contact_update", {"unsubscribed": None}), "unsubscribed", "boolean"),
    (step("u", "contact_update", {"properties": []}), "properties", "must be an object"),
    (step("u", "contact_update", {"properties": {"a": [1]}}), "properties.a", "literal"),
    (step("u", "contact_update", {"properties": {"": 1}}), "properties.", "property key has"),
    (
        step("u", "contact_update", {"properties": {"has space!": 1}}),
        "properties.has space!",
        "1 to 50 letters, digits or underscores",
    ),
    (step("u", "contact_update", {"last_name": "x" * 256}), "last_name", "at most 255"),
    # contact_delete
    (step("x", "contact_delete", {"hard": True}), "hard", "unknown key 'hard'"),
    # add_to_segment
    (step("g", "add_to_segment", {}), "segment_id", "must be a UUID"),
    (step("g", "add_to_segment", {"segment_id": "seg_1"}), "segment_id", "must be a UUID"),
    (step("g", "add_to_segment", {"segment_id": SEGMENT_ID, "x": 1}), "x", "unknown key 'x'"),
]


@pytest.mark.parametrize(("bad", "suffix", "words"), BAD_CONFIGS)
def test_bad_configs(bad: dict[str, Any], suffix: str, words: str) -> None:
    error = invalid(
        [trigger(), delay("first"), bad], [link("start", "first"), link("first", bad["key"])]
    )
    assert error.field == ("steps[2].config" + (f".{suffix}" if suffix else ""))
    assert words in error.message
    assert error.message.startswith(f'step "{bad["key"]}" (steps[2]): ')


@pytest.mark.parametrize(
    ("config", "suffix", "words"),
    [
        ({}, "event_name", "non-empty string"),
        ({"event_name": ""}, "event_name", "non-empty string"),
        ({"event_name": 3}, "event_name", "non-empty string"),
        ({"event_name": "x" * 256}, "event_name", "at most 255"),
        ({"event_name": "a", "filter": 1}, "filter", "unknown key 'filter'"),
    ],
)
def test_bad_trigger_configs(config: dict[str, Any], suffix: str, words: str) -> None:
    error = invalid([delay("first"), step("go", "trigger", config)], [])
    assert error.field == f"steps[1].config.{suffix}"
    assert words in error.message
    assert error.message.startswith('step "go" (steps[1]): ')


def test_trigger_event_name_may_be_255_characters() -> None:
    assert validate_graph([trigger(event="x" * 255)], []).event_name == "x" * 255


def test_trigger_message() -> None:
    error = invalid([step("start", "trigger", {"event_name": " "})], [])
    assert error.field == "steps[0].config.event_name"
    assert error.message == 'step "start" (steps[0]): event_name must be a non-empty string'


def test_first_bad_config_wins() -> None:
    error = invalid([trigger(), delay("a", "x"), delay("b", "y")], [])
    assert error.field == "steps[1].config.duration"


def test_configs_are_checked_before_connections() -> None:
    error = invalid([trigger(), delay("a", "x")], "not a list")
    assert error.field == "steps[1].config.duration"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("Ada <ada@example.com>", True),
        ("ada@example.com", True),
        ('"Acme, Inc." <hello@mail.acme.io>', True),
        ("  ada@example.com ", True),
        ("ada@localhost", False),  # a domain has two labels or more
        ("Zoë <zoe@bücher.example>", True),
        ("Acme, Inc. <hello@acme.io>", False),  # unquoted, the comma makes it a list
        ("ada@example.com, eve@evil.test", False),
        ("ada example.com", False),
        ("<ada@example.com", False),
        ("Ada <ada@example.com> extra", False),
        ("", False),
    ],
)
def test_sender_format(value: str, ok: bool) -> None:
    steps, connections = [trigger(), email("m", **{"from": value})], [link("start", "m")]
    if ok:
        validate_graph(steps, connections)
    else:
        assert invalid(steps, connections).field == "steps[1].config.from"


# --- rule 4: connections --------------------------------------------------------------------

STEPS = [
    trigger(),
    condition("check"),
    email("a"),
    email("b"),
    wait("w"),
    wait("wt", timeout="1 day"),
]
STEPS.append(step("bye", "contact_delete", {}))


@pytest.mark.parametrize(
    ("connections", "field", "words"),
    [
        (None, "connections", "must be a list"),
        ({"from": "start", "to": "a"}, "connections", "must be a list"),
        (["start->a"], "connections[0]", "must be an object"),
        ([{"from": "start"}], "connections[0].to", '"to" must be a step key'),
        ([{"to": "a"}], "connections[0].from", '"from" must be a step key'),
        ([{"from": "start", "to": "a", "when": 1}], "connections[0].when", "unknown key 'when'"),
        ([link("ghost", "a")], "connections[0].from", 'step "ghost" does not exist'),
        ([link("start", "ghost")], "connections[0].to", 'step "ghost" does not exist'),
        ([link("start", "a", "sometimes")], "connections[0].type", "unknown connection type"),
        ([link("start", "a", 3)], "connections[0].type", "unknown connection type"),  # type: ignore[arg-type]
        (
            [link("start", "check"), link("a", "a")],
            "connections[1]",
            'step "a" cannot connect to itself',
        ),
        (
            [link("start", "a"), link("a", "start")],
            "connections[1].to",
            'into trigger "start"',
        ),
        (
            [link("start", "check"), link("check", "a")],
            "connections[1].type",
            'step "check" (condition) cannot have a "default" connection: '
            'use "condition_met" or "condition_not_met"',
        ),
        (
            [link("start", "w"), link("w", "a", "condition_met")],
            "connections[1].type",
            'step "w" (wait_for_event) cannot have a "condition_met" connection: '
            'use "event_received" or "timeout"',
        ),
        (
            [link("start", "a", "event_received")],
            "connections[0].type",
            'step "start" (trigger) cannot have a "event_received" connection: use "default"',
        ),
        (
            [link("start", "bye"), link("bye", "a", "timeout")],
            "connections[1].type",
            'step "bye" (contact_delete) cannot have a "timeout" connection',
        ),
        (
            [link("start", "a"), link("start", "b")],
            "connections[1]",
            'already has a "default" connection (connections[0])',
        ),
        (
            [
                link("start", "check"),
                link("check", "a", "condition_met"),
                link("check", "b", "condition_met"),
            ],
            "connections[2]",
            'step "check" (condition) already has a "condition_met" connection',
        ),
        (
            [link("start", "w"), link("w", "a", "timeout")],
            "connections[1].type",
            'step "w" (wait_for_event) has a "timeout" connection but no config.timeout',
        ),
    ],
)
def test_bad_connections(connections: object, field: str, words: str) -> None:
    error = invalid(STEPS, connections)
    assert error.field == field
    assert words in error.message


@pytest.mark.parametrize("step_type", list(StepType))
def test_connection_types_follow_the_table(step_type: StepType) -> None:
    # Every (source type, connection type) pair is accepted exactly when the table allows it.
    configs = {
        StepType.TRIGGER: {"event_name": "e"},
        StepType.SEND_EMAIL: {"template": {"alias": "a"}},
        StepType.DELAY: {"duration": "1 day"},
        StepType.CONDITION: {"rule": RULE},
        StepType.WAIT_FOR_EVENT: {"event_name": "e", "timeout": "1 day"},
        StepType.CONTACT_UPDATE: {"unsubscribed": True},
        StepType.CONTACT_DELETE: {},
        StepType.ADD_TO_SEGMENT: {"segment_id": SEGMENT_ID},
    }
    for connection_type in ConnectionType:
        source = "start" if step_type == StepType.TRIGGER else "src"
        steps = (
            [trigger()]
            if step_type == StepType.TRIGGER
            else [trigger(), step("src", step_type, configs[step_type])]
        )
        connections = [] if step_type == StepType.TRIGGER else [link("start", "src")]
        connections.append(link(source, "end", connection_type))
        steps.append(email("end"))
        if connection_type in spec_for(step_type).connection_types:
            validate_graph(steps, connections)
        else:
            error = invalid(steps, connections)
            assert error.field == f"connections[{len(connections) - 1}].type"
            assert f'cannot have a "{connection_type}" connection' in error.message


def test_timeout_connection_with_a_timeout_is_fine() -> None:
    steps = [trigger(), wait("wt", timeout="1 day"), email("a"), email("b")]
    connections = [
        link("start", "wt"),
        link("wt", "a", "event_received"),
        link("wt", "b", "timeout"),
    ]
    graph = validate_graph(steps, connections)
    assert graph.next_steps("wt", C.TIMEOUT) == ["b"]


def test_condition_may_have_one_branch_only() -> None:
    steps = [trigger(), condition("check"), email("a")]
    validate_graph(steps, [link("start", "check"), link("check", "a", "condition_not_met")])


# --- rule 5: reachability and cycles --------------------------------------------------------


def test_unreachable_steps_are_named() -> None:
    steps = [trigger(), email("a"), email("b"), email("c")]
    error = invalid(steps, [link("start", "a"), link("b", "c")])
    assert error.field == "steps[2]"
    assert '"b" (steps[2])' in error.message and '"c" (steps[3])' in error.message
    assert '"a"' not in error.message
    assert "reachable from the trigger" in error.message


def test_cycle_is_named() -> None:
    steps = [trigger(), email("a"), email("b"), condition("check")]
    connections = [
        link("start", "a"),
        link("a", "check"),
        link("check", "b", "condition_met"),
        link("b", "a"),
    ]
    error = invalid(steps, connections)
    assert "cycle" in error.message
    assert "a -> check -> b -> a" in error.message
    assert error.message.startswith('step "a" (steps[1])')
    assert error.field == "steps[1]"


def test_a_cycle_off_the_trigger_path_is_unreachable_first() -> None:
    steps = [trigger(), email("a"), email("b")]
    error = invalid(steps, [link("a", "b"), link("b", "a")])
    assert "reachable" in error.message


def test_diamond_is_not_a_cycle() -> None:
    graph = branchy()
    assert graph.order()[-1] == "final"


# --- dead_steps -----------------------------------------------------------------------------


def test_nothing_dead_at_the_start() -> None:
    assert dead_steps(branchy(), active={"start"}, taken={}) == []


def test_condition_met_kills_only_the_not_met_side() -> None:
    graph = branchy()
    taken = {"start": C.DEFAULT, "check": C.CONDITION_MET}
    # merge stays alive through vip; wait and its timeout branch die.
    assert dead_steps(graph, active={"vip"}, taken=taken) == ["wait", "nudge"]


def test_condition_not_met_side_keeps_merge_alive_through_the_wait() -> None:
    graph = branchy()
    taken = {"start": C.DEFAULT, "check": C.CONDITION_NOT_MET}
    assert dead_steps(graph, active={"wait"}, taken=taken) == ["vip"]


def test_wait_received_kills_the_timeout_branch() -> None:
    graph = branchy()
    taken = {"start": C.DEFAULT, "check": C.CONDITION_NOT_MET, "wait": C.EVENT_RECEIVED}
    assert dead_steps(graph, active={"merge"}, taken=taken) == ["vip", "nudge"]


def test_wait_timeout_kills_the_merge_and_everything_after_it() -> None:
    graph = branchy()
    taken = {"start": C.DEFAULT, "check": C.CONDITION_NOT_MET, "wait": C.TIMEOUT}
    assert dead_steps(graph, active={"nudge"}, taken=taken) == ["vip", "merge", "final"]


def test_failed_step_kills_its_successors() -> None:
    graph = branchy()
    taken: dict[str, ConnectionType | None] = {"start": C.DEFAULT, "check": None}
    assert dead_steps(graph, active=set(), taken=taken) == [
        "vip",
        "wait",
        "merge",
        "nudge",
        "final",
    ]


def test_undecided_predecessor_keeps_a_step_alive() -> None:
    graph = branchy()
    # check is neither finished nor active (e.g. the row is about to be created): nothing is dead.
    assert dead_steps(graph, active=set(), taken={"start": C.DEFAULT}) == []


def test_finished_and_active_steps_are_never_reported() -> None:
    graph = branchy()
    taken = {"start": C.DEFAULT, "check": C.CONDITION_MET, "wait": None}
    assert dead_steps(graph, active={"nudge"}, taken=taken) == []


def test_merge_dies_only_when_both_sides_are_dead() -> None:
    steps = [trigger(), condition("c1"), condition("c2"), email("x"), email("y"), email("m")]
    connections = [
        link("start", "c1"),
        link("c1", "c2", "condition_met"),
        link("c1", "y", "condition_not_met"),
        link("c2", "x", "condition_met"),
        link("x", "m"),
        link("y", "m"),
    ]
    graph = validate_graph(steps, connections)
    taken = {"start": C.DEFAULT, "c1": C.CONDITION_MET, "c2": C.CONDITION_NOT_MET}
    assert dead_steps(graph, active=set(), taken=taken) == ["y", "x", "m"]
    taken = {"start": C.DEFAULT, "c1": C.CONDITION_MET}
    assert dead_steps(graph, active={"c2"}, taken=taken) == ["y"]


def test_dead_steps_works_on_a_graph_loaded_from_storage() -> None:
    graph = Graph.from_dict(branchy().to_dict())
    taken = {"start": C.DEFAULT, "check": C.CONDITION_MET}
    assert dead_steps(graph, active={"vip"}, taken=taken) == ["wait", "nudge"]
