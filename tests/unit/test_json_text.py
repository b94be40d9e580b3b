"""engine/json_text.py: orjson's text, the json module's for what orjson refuses."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from engine import json_text


def test_the_text_reads_back_as_the_json_module_would_write_it() -> None:
    value = {"id": uuid.UUID(int=7), "n": [1, 2.5, 1e16, None, True], "text": 'café\n"☕"'}
    text = json_text.dumps(value, str)
    assert json.loads(text) == {**value, "id": str(value["id"])}
    assert ", " not in text and ": " not in text  # compact, as the rows' documents were


def test_datetimes_always_go_to_default() -> None:
    moment = dt.datetime(2026, 12, 3, 22, 0, tzinfo=dt.UTC)
    assert json_text.dumps([moment], dt.datetime.isoformat) == '["2026-12-03T22:00:00+00:00"]'
    with pytest.raises(TypeError):
        json_text.dumps([moment])  # no default: refused, as by the json module


def test_integers_beyond_64_bits_go_through_the_json_module() -> None:
    assert json.loads(json_text.dumps({"big": 2**70, "id": uuid.UUID(int=1)}, str)) == {
        "big": 2**70,
        "id": str(uuid.UUID(int=1)),
    }


def test_what_default_refuses_stays_refused() -> None:
    def refuse(value: object) -> object:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    with pytest.raises(TypeError, match="set is not JSON serializable"):
        json_text.dumps({"s": {1}}, refuse)
