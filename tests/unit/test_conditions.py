from typing import Any

import pytest

from engine.conditions import OPERATORS, evaluate, validate_rule
from engine.errors import InvalidInput, StepFailure
from engine.variables import MissingField

CONTEXT: dict[str, Any] = {
    "event": {
        "plan": "pro",
        "seats": 5,
        "price": 9.5,
        "active": True,
        "tags": ["beta", "vip"],
        "nothing": None,
        "blank": "",
        "none": [],
        "empty": {},
        "signed_up": "2024-03-01T10:00:00+00:00",
        "day": "2024-03-01",
        "profile": {"country": "FR"},
    },
    "contact": {"first_name": "Ada", "email": "ada@example.com"},
    "wait_events": {"payment.completed": {"amount": 42}},
}


def rule(field: str, operator: str, value: object = None, **extra: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"field": field, "operator": operator, **extra}
    if operator not in ("exists", "is_empty"):
        node["value"] = value
    return node


def check(node: dict[str, Any]) -> bool:
    validate_rule(node, field="rule")
    return evaluate(node, CONTEXT)


def test_operator_set() -> None:
    assert (
        frozenset(
            {"eq", "neq", "gt", "gte", "lt", "lte", "contains", "starts_with", "ends_with"}
            | {"exists", "is_empty"}
        )
        == OPERATORS
    )


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        ("event.plan", "eq", "pro", True),
        ("event.plan", "eq", "free", False),
        ("event.seats", "eq", 5, True),
        ("event.seats", "eq", 5.0, True),
        ("event.seats", "eq", "5", False),
        ("event.active", "eq", True, True),
        ("event.active", "eq", 1, False),
        ("event.seats", "eq", True, False),
        ("event.nothing", "eq", None, True),
        ("event.tags", "eq", ["beta", "vip"], True),
        ("event.profile", "eq", {"country": "FR"}, True),
        ("event.plan", "neq", "free", True),
        ("event.plan", "neq", "pro", False),
        ("event.active", "neq", 1, True),
        ("event.seats", "neq", 5.0, False),
        ("event.seats", "gt", 4, True),
        ("event.seats", "gt", 5, False),
        ("event.price", "gt", 9, True),
        ("event.seats", "gte", 5, True),
        ("event.seats", "gte", 6, False),
        ("event.seats", "lt", 5.5, True),
        ("event.seats", "lt", 5, False),
        ("event.seats", "lte", 5, True),
        ("event.seats", "lte", 4.99, False),
        ("event.plan", "gt", "basic", True),
        ("event.plan", "lt", "basic", False),
        ("event.signed_up", "gt", "2024-02-29T23:00:00+00:00", True),
        ("event.signed_up", "lt", "2024-03-01T11:00:00+02:00", False),
        ("event.signed_up", "gte", "2024-03-01T12:00:00+02:00", True),
        ("event.day", "lte", "2024-03-01T00:00:00", True),
        ("event.day", "lt", "2024-03-01", False),
        ("event.day", "gt", "2023-12-31", True),
        ("contact.first_name", "contains", "d", True),
        ("contact.first_name", "contains", "z", False),
        ("event.tags", "contains", "vip", True),
        ("event.tags", "contains", "vi", False),
        ("event.none", "contains", "x", False),
        ("contact.email", "starts_with", "ada@", True),
        ("contact.email", "starts_with", "bob@", False),
        ("contact.email", "ends_with", "@example.com", True),
        ("contact.email", "ends_with", "@example.org", False),
        ("wait_events.payment.completed.amount", "gte", 42, True),
        ("event.profile.country", "eq", "FR", True),
    ],
)
def test_operators(field: str, operator: str, value: object, expected: bool) -> None:
    assert check(rule(field, operator, value)) is expected


def test_dates_compare_as_instants_not_text() -> None:
    # As text "2024-03-01T10:00:00+00:00" < "2024-03-01T11:00:00+02:00", as instants it is later.
    assert check(rule("event.signed_up", "gt", "2024-03-01T11:00:00+02:00")) is True


@pytest.mark.parametrize(
    ("moment", "operator", "expected"),
    [
        # In UTC these lie beyond year 9999 and before year 1: they compare all the same.
        ("9999-12-31T20:00:00-08:00", "lt", False),
        ("9999-12-31T20:00:00-08:00", "gt", True),
        ("0001-01-01T00:00:00+01:00", "gte", False),
        ("0001-01-01T00:00:00+01:00", "lt", True),
    ],
)
def test_dates_at_the_ends_of_the_calendar_compare(
    moment: str, operator: str, expected: bool
) -> None:
    context = {"event": {"at": moment}, "contact": {}, "wait_events": {}}
    assert evaluate(rule("event.at", operator, "2030-01-01"), context) is expected


def test_a_list_index_of_thousands_of_digits_is_a_missing_field() -> None:
    field = "event.tags." + "9" * 4301
    assert check(rule(field, "exists")) is False
    with pytest.raises(MissingField):
        check(rule(field, "eq", "beta"))
    assert check(rule("event.tags.01", "eq", "vip")) is True  # leading zeros still index


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("event.plan", True),
        ("event.nothing", True),
        ("event.blank", True),
        ("event.missing", False),
        ("event.profile.missing", False),
        ("event.plan.deeper", False),
    ],
)
def test_exists(field: str, expected: bool) -> None:
    assert check(rule(field, "exists")) is expected


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("event.missing", True),
        ("event.nothing", True),
        ("event.blank", True),
        ("event.none", True),
        ("event.empty", True),
        ("event.plan", False),
        ("event.seats", False),
        ("event.active", False),
        ("event.tags", False),
        ("event.profile", False),
    ],
)
def test_is_empty(field: str, expected: bool) -> None:
    assert check(rule(field, "is_empty")) is expected


def test_is_empty_of_zero_and_false_is_false() -> None:
    context = {"event": {"zero": 0, "no": False}}
    assert evaluate(rule("event.zero", "is_empty"), context) is False
    assert evaluate(rule("event.no", "is_empty"), context) is False


@pytest.mark.parametrize("operator", sorted(OPERATORS - {"exists", "is_empty"}))
def test_missing_field_fails_naming_the_field(operator: str) -> None:
    with pytest.raises(MissingField) as caught:
        check(rule("event.profile.city", operator, "x"))
    assert caught.value.field == "event.profile.city"
    assert "`event.profile.city`" in caught.value.message


@pytest.mark.parametrize(
    ("field", "operator", "value", "types"),
    [
        ("event.seats", "gt", "4", ("number", "string")),
        ("event.plan", "lt", 3, ("string", "number")),
        ("event.active", "gt", 0, ("boolean", "number")),
        ("event.seats", "gte", True, ("number", "boolean")),
        ("event.nothing", "lte", 1, ("null", "number")),
        ("event.tags", "lt", ["a"], ("list", "list")),
        ("event.seats", "contains", 5, ("number", "number")),
        ("event.plan", "contains", 1, ("string", "number")),
        ("event.profile", "contains", "country", ("object", "string")),
        ("event.seats", "starts_with", "5", ("number", "string")),
        ("event.plan", "ends_with", None, ("string", "null")),
    ],
)
def test_type_mismatch(field: str, operator: str, value: object, types: tuple[str, str]) -> None:
    with pytest.raises(StepFailure) as caught:
        check(rule(field, operator, value))
    error = caught.value
    assert error.code == "type_mismatch"
    assert f"`{field}`" in error.message
    assert repr(operator) in error.message
    assert types[0] in error.message and types[1] in error.message


def test_and_or_groups() -> None:
    yes = rule("event.plan", "eq", "pro")
    no = rule("event.plan", "eq", "free")
    assert check({"type": "and", "rules": [yes, yes]}) is True
    assert check({"type": "and", "rules": [yes, no]}) is False
    assert check({"type": "or", "rules": [no, yes]}) is True
    assert check({"type": "or", "rules": [no, no]}) is False
    assert check({"type": "and", "rules": [yes]}) is True


def test_nested_groups() -> None:
    tree: dict[str, Any] = {
        "type": "or",
        "rules": [
            {
                "type": "and",
                "rules": [rule("event.seats", "gt", 10), rule("event.active", "eq", True)],
            },
            {
                "type": "and",
                "rules": [
                    {"type": "rule", **rule("contact.email", "ends_with", "@example.com")},
                    {"type": "or", "rules": [rule("event.tags", "contains", "vip")]},
                ],
            },
        ],
    }
    assert check(tree) is True
    tree["rules"][1]["rules"][1]["rules"][0]["value"] = "nope"
    assert check(tree) is False


def test_and_short_circuits_left_to_right() -> None:
    # The second rule would fail on a missing field; the first false rule must stop evaluation.
    tree = {"type": "and", "rules": [rule("event.plan", "eq", "free"), rule("event.x", "eq", 1)]}
    assert check(tree) is False
    with pytest.raises(MissingField):
        check(
            {"type": "and", "rules": [rule("event.x", "eq", 1), rule("event.plan", "eq", "free")]}
        )


def test_or_short_circuits_left_to_right() -> None:
    tree = {"type": "or", "rules": [rule("event.plan", "eq", "pro"), rule("event.x", "eq", 1)]}
    assert check(tree) is True
    with pytest.raises(MissingField):
        check({"type": "or", "rules": [rule("event.plan", "eq", "free"), rule("event.x", "eq", 1)]})


def test_valid_rules_pass_validation() -> None:
    validate_rule(rule("event.plan", "eq", "pro"), field="f")
    validate_rule({"type": "rule", **rule("contact.x", "exists")}, field="f")
    validate_rule(rule("wait_events.payment.completed.amount", "gt", 1), field="f")
    validate_rule({"type": "and", "rules": [rule("event.a", "eq", None)]}, field="f")
    validate_rule(rule("event.a", "is_empty", value="ignored"), field="f")


def nest(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = rule("event.plan", "eq", "pro")
    for _ in range(depth - 1):
        node = {"type": "and", "rules": [node]}
    return node


def test_nesting_up_to_ten_levels_is_accepted() -> None:
    validate_rule(nest(10), field="f")


def test_nesting_deeper_than_ten_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_rule(nest(11), field="f")
    assert "at most 10 levels" in caught.value.message
    assert caught.value.field == "f" + ".rules[0]" * 10


@pytest.mark.parametrize(
    ("node", "field", "words"),
    [
        ("event.plan == 'pro'", "c", "must be an object"),
        (None, "c", "must be an object"),
        ({"type": "xor", "rules": []}, "c.type", "unknown rule type"),
        ({"type": ["and"], "rules": []}, "c.type", 'must be "rule", "and" or "or"'),
        ({"type": {"x": 1}}, "c.type", 'must be "rule", "and" or "or"'),
        ({"type": None, "field": "event.a", "operator": "exists"}, "c.type", "must be"),
        ({"type": "and"}, "c.rules", 'non-empty "rules" list'),
        ({"type": "or", "rules": []}, "c.rules", 'non-empty "rules" list'),
        ({"type": "and", "rules": "x"}, "c.rules", 'non-empty "rules" list'),
        ({"type": "and", "rules": [], "extra": 1}, "c.extra", "unknown key 'extra'"),
        ({"operator": "eq", "value": 1}, "c.field", 'needs a "field"'),
        ({"field": "plan", "operator": "eq", "value": 1}, "c.field", "must start with one of"),
        ({"field": "event", "operator": "eq", "value": 1}, "c.field", "event.<key>"),
        ({"field": 3, "operator": "eq", "value": 1}, "c.field", "non-empty string"),
        ({"field": "event.a", "value": 1}, "c.operator", "unknown operator None"),
        ({"field": "event.a", "operator": "like", "value": 1}, "c.operator", "unknown operator"),
        ({"field": "event.a", "operator": "eq"}, "c.value", 'needs a "value"'),
        ({"field": "event.a", "operator": "gt"}, "c.value", 'needs a "value"'),
        ({"field": "event.a", "operator": "eq", "value": 1, "rules": []}, "c.rules", "unknown key"),
        ({"type": "rule", "field": "event.a", "operator": "exists", "x": 1}, "c.x", "unknown key"),
    ],
)
def test_invalid_rules(node: object, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_rule(node, field="c")
    assert caught.value.field == field
    assert words in caught.value.message


def test_unknown_operator_lists_the_allowed_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_rule(rule("event.a", "like", 1), field="c")
    for operator in OPERATORS:
        assert operator in caught.value.message


def test_error_path_points_into_nested_groups() -> None:
    tree = {
        "type": "and",
        "rules": [
            rule("event.a", "eq", 1),
            {"type": "or", "rules": [rule("event.b", "eq", 1), rule("event.c", "nope", 1)]},
        ],
    }
    with pytest.raises(InvalidInput) as caught:
        validate_rule(tree, field="steps[2].config")
    assert caught.value.field == "steps[2].config.rules[1].rules[1].operator"
