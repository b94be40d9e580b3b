"""Steps that shape the path of a run: trigger, delay, condition."""

from __future__ import annotations

from engine.conditions import evaluate
from engine.durations import parse_duration
from engine.errors import StepFailure
from engine.graph import condition_rule
from engine.outcomes import Completed, Failed, Outcome, Waiting
from engine.steps.context import StepRun
from models.enums import ConnectionType


def run_trigger(sr: StepRun) -> Outcome:
    return Completed(output={"event_id": str(sr.run.run.event_id)})


def run_delay(sr: StepRun) -> Outcome:
    duration = sr.step.config["duration"]
    if sr.first_execution:
        resume_at = sr.now + parse_duration(duration) * sr.rt.settings.time_scale
        return Waiting(
            due_at=resume_at, output={"duration": duration, "resume_at": resume_at.isoformat()}
        )
    return Completed(output={"duration": duration, "resumed_at": sr.now.isoformat()})


def run_condition(sr: StepRun) -> Outcome:
    try:
        met = evaluate(condition_rule(sr.step.config), sr.variables())
    except StepFailure as failure:
        return Failed(failure.message, failure.code)
    branch = ConnectionType.CONDITION_MET if met else ConnectionType.CONDITION_NOT_MET
    return Completed(branch=branch, output={"result": met, "branch": branch.value})
