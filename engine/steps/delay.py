"""delay: park the run for a duration, then go on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.durations import parse_duration
from engine.outcomes import Completed, Outcome, Waiting
from engine.step_configs import only_keys
from engine.step_types import DEFAULT_ONLY, StepTypeSpec
from engine.steps.context import StepRun
from models.enums import StepType


def check_delay(config: dict[str, Any], at: str) -> dict[str, Any]:
    only_keys(config, {"duration"}, at, "delay config")
    parse_duration(config.get("duration"), field=f"{at}.duration")
    return config


def run_delay(sr: StepRun) -> Outcome:
    duration = sr.step.config["duration"]
    if sr.first_execution:
        resume_at = sr.now + parse_duration(duration) * sr.rt.settings.time_scale
        return Waiting(
            due_at=resume_at, output={"duration": duration, "resume_at": resume_at.isoformat()}
        )
    return Completed(output={"duration": duration, "resumed_at": sr.now.isoformat()})


def _summary(config: Mapping[str, Any]) -> str:
    return str(config.get("duration", ""))


SPEC = StepTypeSpec(
    name=StepType.DELAY,
    check_config=check_delay,
    handler=run_delay,
    connection_types=DEFAULT_ONLY,
    label="delay",
    instant=False,
    summary=_summary,
)
