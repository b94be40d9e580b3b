"""Whatever the API accepts, it shows back: GET answers 200 with the same value, on both
databases (PostgreSQL's jsonb and SQLite's JSON text keep numbers differently)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.api.test_input_limits_api import nested
from tests.integration.factories import make_automation, unique_email
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
JSON = {"Content-Type": "application/json"}
HTTP_EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=25,
) | st.integers(min_value=20, max_value=40).map(nested)


def decimal_json(text: str) -> Any:
    """JSON read with exact numbers: 1e+300 and 1000…000 are the same number."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


@HTTP_EXAMPLES
@given(json_values)
def test_any_payload_the_api_accepts_it_shows_back(
    api: httpx.Client, rt_stack: Stack, value: Any
) -> None:
    name = f"shown.back.{uuid.uuid4().hex[:8]}"  # one run per example, whatever came before
    trigger = {"key": "start", "type": "trigger", "config": {"event_name": name}}
    automation = make_automation(rt_stack, [trigger], [])
    sent = json.dumps({"event": name, "email": unique_email(), "payload": {"v": value}})
    answer = api.post("/events/send", content=sent, headers=JSON)
    assert answer.status_code in {202, 422}, answer.text
    if answer.status_code == 422:
        return
    runs = api.get(f"/automations/{automation}/runs").json()["data"]
    answer = api.get(f"/automations/{automation}/runs/{runs[0]['id']}")
    assert answer.status_code == 200, answer.text
    shown = decimal_json(answer.text)["event"]["payload"]
    assert shown == decimal_json(sent)["payload"]


property_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)


@HTTP_EXAMPLES
@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True), property_values, max_size=5
    )
)
def test_any_properties_the_api_accepts_it_shows_back(
    api: httpx.Client, rt_stack: Stack, properties: dict[str, Any]
) -> None:
    sent = json.dumps({"email": unique_email(), "properties": properties})
    answer = api.post("/contacts", content=sent, headers=JSON)
    assert answer.status_code in {201, 422}, answer.text
    if answer.status_code == 422:
        return
    shown = api.get(f"/contacts/{answer.json()['id']}")
    assert shown.status_code == 200, shown.text
    assert decimal_json(shown.text)["properties"] == decimal_json(sent)["properties"]
