"""trigger: the event that starts a run. Ingestion completes it; executing it again is a no-op."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.outcomes import Completed, Outcome
from engine.step_configs import event_name_config, only_keys
from engine.step_types import DEFAULT_ONLY, StepTypeSpec
from engine.steps.context import StepRun
from models.enums import StepType


def check_trigger(config: dict[str, Any], at: str) -> dict[str, Any]:
    only_keys(config, {"event_name"}, at, "trigger config")
    event_name_config(config, at)
    return config


def run_trigger(sr: StepRun) -> Outcome:
    return Completed(output={"event_id": str(sr.run.run.event_id)})


def event_summary(config: Mapping[str, Any]) -> str:
    """The event a trigger or a wait listens for, and a wait's timeout."""
    timeout = config.get("timeout")
    return str(config.get("event_name", "")) + (f", timeout {timeout}" if timeout else "")


SPEC = StepTypeSpec(
    name=StepType.TRIGGER,
    check_config=check_trigger,
    handler=run_trigger,
    connection_types=DEFAULT_ONLY,
    label="trigger",
    instant=True,
    summary=event_summary,
)
