"""Validate and evaluate condition rule trees; plain data in, a bool out, no eval."""

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import InvalidInput, StepFailure
from engine.variables import MissingField, resolve_path, validate_reference

OPERATORS = frozenset(
    {
        "eq",
        "neq",
        "gt",
        "gte",
        "lt",
        "lte",
        "contains",
        "starts_with",
        "ends_with",
        "exists",
        "is_empty",
    }
)

# These two answer questions about absence, so they need no value and accept a missing field.
_PRESENCE_OPERATORS = frozenset({"exists", "is_empty"})
_GROUP_TYPES = frozenset({"and", "or"})
_LEAF_KEYS = frozenset({"type", "field", "operator", "value"})
_GROUP_KEYS = frozenset({"type", "rules"})
MAX_DEPTH = 10


def validate_rule(rule: object, *, field: str) -> None:
    """Raise InvalidInput naming the precise field of the first broken rule."""
    _validate_node(rule, field, 1)


def _validate_node(rule: object, field: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"rules may be nested at most {MAX_DEPTH} levels deep", field=field)
    if not isinstance(rule, dict):
        raise InvalidInput("a rule must be an object", field=field)
    kind = rule.get("type", "rule")
    if not isinstance(kind, str):
        raise InvalidInput('a rule type must be "rule", "and" or "or"', field=f"{field}.type")
    if kind in _GROUP_TYPES:
        _validate_group(rule, field, depth)
    elif kind == "rule":
        _validate_leaf(rule, field)
    else:
        raise InvalidInput(
            f'unknown rule type {kind!r}: use "rule", "and" or "or"', field=f"{field}.type"
        )


def _refuse_unknown_keys(rule: Mapping[str, Any], allowed: frozenset[str], field: str) -> None:
    unknown = sorted(set(rule) - allowed)
    if unknown:
        keys = ", ".join(sorted(allowed))
        raise InvalidInput(
            f"unknown key {unknown[0]!r} in rule: allowed keys are {keys}",
            field=f"{field}.{unknown[0]}",
        )


def _validate_group(rule: Mapping[str, Any], field: str, depth: int) -> None:
    _refuse_unknown_keys(rule, _GROUP_KEYS, field)
    rules = rule.get("rules")
    if not isinstance(rules, list) or not rules:
        raise InvalidInput(
            f'a group of type "{rule["type"]}" needs a non-empty "rules" list',
            field=f"{field}.rules",
        )
    for index, child in enumerate(rules):
        _validate_node(child, f"{field}.rules[{index}]", depth + 1)


def _validate_leaf(rule: Mapping[str, Any], field: str) -> None:
    _refuse_unknown_keys(rule, _LEAF_KEYS, field)
    if "field" not in rule:
        raise InvalidInput('a rule needs a "field", e.g. "event.plan"', field=f"{field}.field")
    validate_reference(rule["field"], field=f"{field}.field")
    operator = rule.get("operator")
    if not isinstance(operator, str) or operator not in OPERATORS:
        allowed = ", ".join(sorted(OPERATORS))
        raise InvalidInput(
            f"unknown operator {operator!r}: use one of {allowed}", field=f"{field}.operator"
        )
    if operator not in _PRESENCE_OPERATORS and "value" not in rule:
        raise InvalidInput(
            f'operator "{operator}" needs a "value" to compare with', field=f"{field}.value"
        )


def evaluate(rule: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    """Evaluate a validated rule tree against a run's context."""
    kind = rule.get("type", "rule")
    if kind == "and":
        return all(evaluate(child, context) for child in rule["rules"])
    if kind == "or":
        return any(evaluate(child, context) for child in rule["rules"])
    return _evaluate_leaf(rule, context)


def _evaluate_leaf(rule: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    field: str = rule["field"]
    operator: str = rule["operator"]
    try:
        actual = resolve_path(context, field)
    except MissingField:
        if operator == "exists":
            return False
        if operator == "is_empty":
            return True
        raise
    if operator == "exists":
        return True
    if operator == "is_empty":
        return actual is None or actual in ("", [], {})
    compare = _COMPARATORS.get(operator)
    if compare is None:
        raise StepFailure(f"unknown operator {operator!r} in the rule on `{field}`")
    return compare(field, operator, actual, rule.get("value"))


def _is_number(value: object) -> bool:
    # bool is an int subclass, but True > 0 is not a comparison anyone means.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _mismatch(field: str, operator: str, actual: object, expected: object) -> StepFailure:
    return StepFailure(
        f"Field `{field}` cannot be compared with operator {operator!r}: "
        f"the field is a {_type_name(actual)} and the value is a {_type_name(expected)}",
        code="type_mismatch",
    )


def _equal(actual: object, expected: object) -> bool:
    if _is_number(actual) and _is_number(expected):
        return actual == expected
    # Exact type match otherwise, so True never equals 1 and "1" never equals 1.
    return type(actual) is type(expected) and actual == expected


def _parse_datetime(value: str) -> dt.datetime | None:
    """An ISO-8601 date or datetime, aware, or None if it is not one."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    # Naive values are taken as UTC so that naive and aware ones can be compared. Aware ones
    # keep their offset: aware datetimes compare as instants, and converting 9999-12-31 at
    # -05:00 to UTC would leave the range of dates.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed


def _orderable(field: str, operator: str, actual: object, expected: object) -> tuple[Any, Any]:
    """The two values in a form that can be ordered, or a type_mismatch failure."""
    if _is_number(actual) and _is_number(expected):
        return actual, expected
    if isinstance(actual, str) and isinstance(expected, str):
        left, right = _parse_datetime(actual), _parse_datetime(expected)
        if left is not None and right is not None:
            return left, right
        return actual, expected
    raise _mismatch(field, operator, actual, expected)


def _ordering(test: Callable[[Any, Any], bool]) -> Callable[[str, str, object, object], bool]:
    def compare(field: str, operator: str, actual: object, expected: object) -> bool:
        left, right = _orderable(field, operator, actual, expected)
        return test(left, right)

    return compare


def _contains(field: str, operator: str, actual: object, expected: object) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        return expected in actual
    if isinstance(actual, list):
        return any(_equal(item, expected) for item in actual)
    raise _mismatch(field, operator, actual, expected)


def _affix(test: Callable[[str, str], bool]) -> Callable[[str, str, object, object], bool]:
    def compare(field: str, operator: str, actual: object, expected: object) -> bool:
        if isinstance(actual, str) and isinstance(expected, str):
            return test(actual, expected)
        raise _mismatch(field, operator, actual, expected)

    return compare


_COMPARATORS: dict[str, Callable[[str, str, object, object], bool]] = {
    "eq": lambda _f, _o, a, b: _equal(a, b),
    "neq": lambda _f, _o, a, b: not _equal(a, b),
    "gt": _ordering(lambda a, b: a > b),
    "gte": _ordering(lambda a, b: a >= b),
    "lt": _ordering(lambda a, b: a < b),
    "lte": _ordering(lambda a, b: a <= b),
    "contains": _contains,
    "starts_with": _affix(str.startswith),
    "ends_with": _affix(str.endswith),
}
