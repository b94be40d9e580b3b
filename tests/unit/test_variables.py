from typing import Any

import pytest

from engine.errors import InvalidInput, StepFailure
from engine.variables import (
    ROOTS,
    MissingField,
    is_reference,
    resolve_path,
    resolve_value,
    resolve_variables,
    validate_reference,
)

CONTEXT: dict[str, Any] = {
    "event": {
        "plan": "pro",
        "user": {"name": "Ada", "tags": ["a", "b"], "empty": None},
        "items": [{"sku": "x1"}, {"sku": "x2"}],
        "count": 0,
        "0": "zero-key",
    },
    "contact": {"first_name": "Ada", "email": "ada@example.com"},
    "wait_events": {
        "payment": {"amount": 1, "kind": "short"},
        "payment.completed": {"amount": 42, "currency": "eur"},
        "payment.completed.refund": {"amount": -5},
    },
}


def test_roots() -> None:
    assert ROOTS == ("event", "contact", "wait_events")


def test_missing_field_is_a_step_failure() -> None:
    error = MissingField("event.plan")
    assert isinstance(error, StepFailure)
    assert error.code == "missing_field"
    assert error.field == "event.plan"
    assert error.message == "Field `event.plan` does not exist"
    assert error.as_error() == {"message": error.message, "code": "missing_field"}


@pytest.mark.parametrize(
    "path",
    [
        "event.plan",
        "event.user.name",
        "contact.first_name",
        "wait_events.payment.completed.amount",
        "wait_events.payment.amount",
        "event.items.0.sku",
    ],
)
def test_valid_references(path: str) -> None:
    assert validate_reference(path, field="f") == path


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        (None, "non-empty string"),
        (3, "non-empty string"),
        ("", "non-empty string"),
        ("event", "event.<key>"),
        ("contact", "contact.<key>"),
        ("wait_events", "wait_events.<event name>.<key>"),
        ("wait_events.payment", "wait_events.<event name>.<key>"),
        ("user.name", "must start with one of"),
        ("Event.plan", "must start with one of"),
        ("event..plan", "empty segment"),
        ("event.plan.", "empty segment"),
        (".event.plan", "must start with one of"),
    ],
)
def test_invalid_references(path: object, rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_reference(path, field="steps[1].config.variables.NAME")
    assert rule in caught.value.message
    assert caught.value.field == "steps[1].config.variables.NAME"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("event.plan", "pro"),
        ("event.user.name", "Ada"),
        ("event.user.tags", ["a", "b"]),
        ("event.user.tags.1", "b"),
        ("event.items.1.sku", "x2"),
        ("event.user.empty", None),
        ("event.count", 0),
        ("event.0", "zero-key"),
        ("contact.email", "ada@example.com"),
        ("wait_events.payment.completed.amount", 42),
        ("wait_events.payment.completed.currency", "eur"),
        ("wait_events.payment.completed.refund.amount", -5),
        ("wait_events.payment.kind", "short"),
    ],
)
def test_resolve_path(path: str, expected: object) -> None:
    assert resolve_path(CONTEXT, path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "event.missing",
        "event.user.missing",
        "event.user.name.first",
        "event.user.tags.2",
        "event.user.tags.-1",
        "event.user.tags.x",
        "event.user.empty.x",
        "event.plan.0",
        "contact.last_name",
        "wait_events.unknown.amount",
        "wait_events.payment.completed.missing",
        "unknown.root",
    ],
)
def test_missing_segments_raise_missing_field(path: str) -> None:
    with pytest.raises(MissingField) as caught:
        resolve_path(CONTEXT, path)
    assert caught.value.field == path
    assert f"`{path}`" in caught.value.message


def test_longest_event_name_wins() -> None:
    # "a.b.c" could be read as event "a" then keys "b.c", or event "a.b" then key "c".
    context = {"wait_events": {"a": {"b": {"c": 1}}, "a.b": {"c": 2}}}
    assert resolve_path(context, "wait_events.a.b.c") == 2


def test_wait_events_missing_from_context() -> None:
    with pytest.raises(MissingField):
        resolve_path({"event": {}}, "wait_events.payment.amount")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"var": "event.plan"}, True),
        ({"var": ""}, True),
        ({"var": 1}, False),
        ({"var": "event.plan", "x": 1}, False),
        ({"value": "event.plan"}, False),
        ("event.plan", False),
        (None, False),
        ([{"var": "event.plan"}], False),
    ],
)
def test_is_reference(value: object, expected: bool) -> None:
    assert is_reference(value) is expected


@pytest.mark.parametrize("literal", ["event.plan", 3, 2.5, True, None, {"x": 1}, [1]])
def test_literals_are_returned_unchanged(literal: object) -> None:
    assert resolve_value(literal, CONTEXT) == literal


def test_reference_is_resolved() -> None:
    assert resolve_value({"var": "contact.first_name"}, CONTEXT) == "Ada"


def test_resolve_variables_mixes_literals_and_references() -> None:
    spec = {
        "NAME": {"var": "contact.first_name"},
        "PLAN": {"var": "event.plan"},
        "AMOUNT": {"var": "wait_events.payment.completed.amount"},
        "COMPANY": "Acme",
        "N": 3,
    }
    assert resolve_variables(spec, CONTEXT, {}) == {
        "NAME": "Ada",
        "PLAN": "pro",
        "AMOUNT": 42,
        "COMPANY": "Acme",
        "N": 3,
    }


def test_fallback_replaces_a_missing_field() -> None:
    spec = {"NAME": {"var": "contact.last_name"}, "PLAN": {"var": "event.plan"}}
    fallbacks = {"NAME": "there", "PLAN": "free"}
    assert resolve_variables(spec, CONTEXT, fallbacks) == {"NAME": "there", "PLAN": "pro"}


def test_fallback_may_be_none() -> None:
    assert resolve_variables({"X": {"var": "event.nope"}}, CONTEXT, {"X": None}) == {"X": None}


def test_missing_field_without_fallback_propagates() -> None:
    spec = {"NAME": {"var": "contact.last_name"}}
    with pytest.raises(MissingField) as caught:
        resolve_variables(spec, CONTEXT, {"OTHER": "x"})
    assert caught.value.field == "contact.last_name"


def test_resolve_variables_leaves_out_an_optional_missing_field() -> None:
    spec = {"X": {"var": "event.nope"}, "Y": {"var": "event.nope"}}
    assert resolve_variables(spec, CONTEXT, {"Y": "y"}, optional={"X"}) == {"Y": "y"}
    with pytest.raises(MissingField):
        resolve_variables(spec, CONTEXT, {}, optional={"Y"})
