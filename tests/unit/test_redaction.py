"""What a producer's message shows in Flower and the log: masked, and bounded in text and work."""

from __future__ import annotations

import ast

from tasks.redaction import MASK, MAX_CHARS, SHOWN_VALUES, shown_kwargs


def _event(number: int) -> dict[str, object]:
    return {
        "event": "user.created",
        "email": f"person{number}@example.com",
        "payload": {"plan": "pro", "card": "4242"},
        "idempotency_key": f"key-{number}",
    }


def test_an_event_shows_its_name_and_key_and_masks_the_person() -> None:
    shown = shown_kwargs({**_event(1), "contact_id": None})
    assert ast.literal_eval(shown) == {
        "event": "user.created",
        "email": MASK,
        "payload": MASK,
        "idempotency_key": "key-1",
        "contact_id": None,
    }


def test_a_hidden_key_is_masked_at_any_depth_and_none_stays_none() -> None:
    shown = ast.literal_eval(shown_kwargs({"events": [{"email": None, "x": {"payload": [1]}}]}))
    assert shown == {"events": [{"email": None, "x": {"payload": MASK}}]}


def test_a_batch_shows_its_first_events_cut_at_the_limit_and_no_address() -> None:
    shown = shown_kwargs({"events": [_event(n) for n in range(100)]})
    assert len(shown) == MAX_CHARS
    assert shown.startswith("{'events': [{'event': 'user.created', 'email': '***'")
    assert shown.endswith("...")
    assert "@" not in shown and "4242" not in shown


def test_a_long_list_is_cut_after_the_values_it_may_copy() -> None:
    shown = shown_kwargs({"ids": list(range(100_000))})
    assert shown.endswith(", ...]}")
    assert len(shown) <= MAX_CHARS
    assert shown.count(",") < SHOWN_VALUES


def test_a_long_text_and_a_deep_value_are_bounded() -> None:
    assert len(shown_kwargs({"note": "x" * 1_000_000})) == MAX_CHARS
    deep: object = "bottom"
    for _ in range(900):  # about as deep as a JSON body can decode
        deep = [deep]
    shown = shown_kwargs({"deep": deep})
    assert "..." in shown and "bottom" not in shown and len(shown) <= MAX_CHARS


def test_a_long_key_is_cut_too() -> None:
    assert len(shown_kwargs({"k" * 1_000_000: 1})) == MAX_CHARS
