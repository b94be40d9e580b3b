"""A simulation's timeline depends on the automation and its inputs, never on a worker knob."""

from __future__ import annotations

import pytest

from engine.scenario import parse_scenario
from engine.simulation import simulate
from tests.engine.conftest import MakeDriver

GRAPH = {
    "steps": [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {
            "key": "is_pro",
            "type": "condition",
            "config": {"rule": {"field": "event.plan", "operator": "eq", "value": "pro"}},
        },
        {"key": "mark_pro", "type": "contact_update", "config": {"properties": {"pro": True}}},
        {"key": "mark_free", "type": "contact_update", "config": {"properties": {"pro": False}}},
    ],
    "connections": [
        {"from": "start", "to": "is_pro"},
        {"from": "is_pro", "to": "mark_pro", "type": "condition_met"},
        {"from": "is_pro", "to": "mark_free", "type": "condition_not_met"},
    ],
}


@pytest.mark.parametrize("inline_steps", [0, 8])
def test_the_timeline_is_the_same_whatever_the_servers_inline_steps(
    make_driver: MakeDriver, inline_steps: int
) -> None:
    """The branch not taken is skipped when the condition completes, before the step it chose
    runs: as docs/simulation.md shows it, with or without AUTOMATIONS_INLINE_STEPS."""
    driver = make_driver(inline_steps=inline_steps)
    scenario = parse_scenario(
        {
            "automation": GRAPH,
            "contact": {"email": "ada@example.com"},
            "event": {"payload": {"plan": "pro"}},
        }
    )
    steps = simulate(driver.rt, scenario).steps
    assert [(step.key, step.status) for step in steps] == [
        ("start", "completed"),
        ("is_pro", "completed"),
        ("mark_free", "skipped"),
        ("mark_pro", "completed"),
    ]
