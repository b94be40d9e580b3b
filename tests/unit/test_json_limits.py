"""Bounds on free JSON: depth and size, JSON types only, text that every database stores."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import InvalidInput
from engine.json_limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, JsonLimits

LIMITS = JsonLimits()


def nested(depth: int, leaf: Any = 1) -> Any:
    """`depth` objects and arrays within each other, alternating, around the leaf."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def test_defaults_are_the_documented_ones() -> None:
    assert (DEFAULT_MAX_DEPTH, DEFAULT_MAX_BYTES) == (32, 65536)


def test_depth_up_to_the_limit_is_accepted_and_one_more_is_refused() -> None:
    LIMITS.check(nested(32), field="payload")
    LIMITS.check({"scalar": "x", "empty": {}, "list": []}, field="payload")
    with pytest.raises(InvalidInput) as refused:
        LIMITS.check(nested(33), field="payload")
    assert refused.value.field == "payload"
    assert "nested more than 32 levels deep" in refused.value.message
    assert refused.value.message.startswith("`payload` ")


def test_a_very_deep_value_is_refused_without_recursion() -> None:
    with pytest.raises(InvalidInput, match="more than 32 levels"):
        LIMITS.check(nested(100_000), field="payload")


def test_size_is_counted_as_utf8_json() -> None:
    overhead = len(json.dumps({"k": ""}, separators=(",", ":")))
    LIMITS.check({"k": "x" * (DEFAULT_MAX_BYTES - overhead)}, field="payload")
    with pytest.raises(InvalidInput) as refused:
        LIMITS.check({"k": "é" * (DEFAULT_MAX_BYTES // 2)}, field="payload")
    assert f"is {DEFAULT_MAX_BYTES + overhead} bytes as JSON" in refused.value.message
    assert f"at most {DEFAULT_MAX_BYTES} bytes" in refused.value.message


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"n": float("nan")}, "`payload.n` is nan"),
        ({"n": [1, float("inf")]}, "`payload.n[1]` is inf"),
        ({"t": "a\x00b"}, "`payload.t` holds a NUL"),
        ({"a\x00": 1}, "holds a NUL"),
        ({"t": "\ud800"}, "lone surrogate"),
        ({"t": b"bytes"}, "not a JSON value"),
        ({"t": {1, 2}}, "not a JSON value"),
        ({1: "x"}, "key that is not text"),
    ],
)
def test_values_json_cannot_hold_or_a_database_cannot_store(value: Any, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        LIMITS.check(value, field="payload")
    assert words in refused.value.message


def test_limits_are_settings() -> None:
    small = JsonLimits(max_depth=2, max_bytes=20)
    small.check({"a": [1]}, field="properties")
    with pytest.raises(InvalidInput, match="more than 2 levels"):
        small.check({"a": [[1]]}, field="properties")
    with pytest.raises(InvalidInput, match="at most 20 bytes"):
        small.check({"a": "x" * 20}, field="properties")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=30,
)


@given(json_values)
def test_whatever_is_accepted_survives_a_json_round_trip(value: Any) -> None:
    try:
        LIMITS.check(value, field="payload")
    except InvalidInput:
        return
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    assert json.loads(text) == value
    text.encode()  # valid UTF-8
    assert "\x00" not in text
