from datetime import timedelta

import pytest

from engine.durations import MAX_DURATION, parse_duration
from engine.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 minute", timedelta(minutes=1)),
        ("30 minutes", timedelta(minutes=30)),
        ("1 hour", timedelta(hours=1)),
        ("12 hours", timedelta(hours=12)),
        ("1 day", timedelta(days=1)),
        ("3 days", timedelta(days=3)),
        ("1 week", timedelta(weeks=1)),
        ("4 weeks", timedelta(weeks=4)),
        ("30 days", timedelta(days=30)),
        ("720 hours", timedelta(days=30)),
        ("43200 minutes", timedelta(days=30)),
        ("  2   Hours ", timedelta(hours=2)),
        ("5 MINUTES", timedelta(minutes=5)),
        ("1 minutes", timedelta(minutes=1)),
        ("2 hour", timedelta(hours=2)),
    ],
)
def test_valid_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "3 dayz",
        "",
        "   ",
        "0 minutes",
        "-1 day",
        "1.5 hours",
        "1,5 hours",
        "hours",
        "3",
        "3days",
        "3 days later",
        "1 month",
        "1 second",
        "one day",
        "+3 days",
        "٣ days",
    ],
)
def test_invalid_durations(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration(text, field="steps[1].config.duration")
    assert caught.value.field == "steps[1].config.duration"
    assert repr(text) in caught.value.message


def test_message_explains_the_format() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration("3 dayz")
    assert caught.value.message == (
        "'3 dayz' is not a duration: use a whole number and a unit, "
        'e.g. "30 minutes", "1 hour", "3 days", "1 week"'
    )
    assert caught.value.field == "duration"


@pytest.mark.parametrize("value", [None, 3, 3.0, ["3 days"], {"days": 3}, True])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput, match="is not a duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    "text", ["5 weeks", "31 days", "721 hours", "43201 minutes", "99999999999999999999 weeks"]
)
def test_longer_than_thirty_days_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration(text)
    assert caught.value.message == f"{text!r} is longer than the maximum of 30 days"


def test_max_duration_is_thirty_days() -> None:
    assert timedelta(days=30) == MAX_DURATION


@pytest.mark.parametrize("unit", ["minutes", "days"])
def test_a_number_of_thousands_of_digits_is_longer_than_the_maximum(unit: str) -> None:
    text = "9" * 4301 + " " + unit
    with pytest.raises(InvalidInput) as caught:
        parse_duration(text, field="d")
    assert caught.value.field == "d"
    assert "longer than the maximum of 30 days" in caught.value.message
    assert len(caught.value.message) < 120  # the number is shortened, not echoed whole


def test_leading_zeros_are_the_same_number() -> None:
    assert parse_duration("0030 minutes") == timedelta(minutes=30)
    with pytest.raises(InvalidInput):
        parse_duration("000 days")
