"""condition: evaluate a rule tree and take the condition_met or condition_not_met branch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.conditions import evaluate, validate_rule
from engine.errors import InvalidInput, StepFailure
from engine.graph import condition_rule
from engine.outcomes import Completed, Failed, Outcome
from engine.step_configs import only_keys
from engine.step_types import StepTypeSpec
from engine.steps.context import StepRun
from models.enums import ConnectionType, StepType


def check_condition(config: dict[str, Any], at: str) -> dict[str, Any]:
    if not config:
        raise InvalidInput('a condition needs a rule: {"rule": {...}} or the rule itself', field=at)
    if "rule" in config:
        only_keys(config, {"rule"}, at, "condition config")
        validate_rule(config["rule"], field=f"{at}.rule")
    else:
        validate_rule(config, field=at)
    return config


def run_condition(sr: StepRun) -> Outcome:
    try:
        met = evaluate(condition_rule(sr.step.config), sr.variables())
    except StepFailure as failure:
        return Failed(failure.message, failure.code)
    branch = ConnectionType.CONDITION_MET if met else ConnectionType.CONDITION_NOT_MET
    return Completed(branch=branch, output={"result": met, "branch": branch.value})


def _summary(config: Mapping[str, Any]) -> str:
    rule = condition_rule(config)
    if "rules" in rule:
        inner = rule.get("rules") or []
        return f"{rule.get('type', 'and')} of {len(inner)} rules"
    value = rule.get("value")
    return f"{rule.get('field', '?')} {rule.get('operator', '?')} {'' if value is None else value}"


SPEC = StepTypeSpec(
    name=StepType.CONDITION,
    check_config=check_condition,
    handler=run_condition,
    connection_types=frozenset({ConnectionType.CONDITION_MET, ConnectionType.CONDITION_NOT_MET}),
    label="condition",
    instant=True,
    summary=_summary,
)
