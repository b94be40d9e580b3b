"""What `automations simulate --expect FILE` checks a simulation against.

The file is either one expectation for the simulation the options describe, or `cases:`, each
with its own inputs (over the options' and the file's defaults) and its own `expect:`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

EXPECT_KEYS = ("status", "duration", "path", "steps", "errors", "emails")
EMAIL_KEYS = ("step", "subject", "to", "contains")
INPUT_KEYS = ("contact", "event", "payload", "then", "until")
REACHED = ("completed", "failed", "waiting")


class BadExpectations(ValueError):
    """The expectations file is not one this command can read; the message says where."""


@dataclass(frozen=True)
class Case:
    name: str
    inputs: dict[str, Any] = field(default_factory=dict)  # contact, event, payload, then, until
    expect: dict[str, Any] = field(default_factory=dict)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadExpectations(f"{where} must be a mapping")
    return value


def _only(value: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    unknown = sorted(str(key) for key in value if key not in keys)
    if unknown:
        raise BadExpectations(f"{where}: unknown field {unknown[0]!r} (expected {', '.join(keys)})")


def read_cases(document: Any) -> tuple[dict[str, Any], list[Case]]:
    """The file's default inputs and its cases (one unnamed case for a single expectation)."""
    top = _mapping(document, "the file")
    if "cases" not in top:
        _only(top, EXPECT_KEYS, "the file")
        return {}, [Case("", {}, _expect(top, "the file"))]
    _only(top, ("cases", *INPUT_KEYS), "the file")
    defaults = {key: top[key] for key in INPUT_KEYS if key in top}
    raw = top["cases"]
    if not isinstance(raw, list) or not raw:
        raise BadExpectations("`cases` must be a non-empty list")
    cases = []
    for index, item in enumerate(raw):
        where = f"cases[{index}]"
        case = _mapping(item, where)
        _only(case, ("name", "expect", *INPUT_KEYS), where)
        name = str(case.get("name") or f"case {index + 1}")
        inputs = {key: case[key] for key in INPUT_KEYS if key in case}
        cases.append(Case(name, inputs, _expect(case.get("expect", {}), f"{where}.expect")))
    return defaults, cases


def _expect(value: Any, where: str) -> dict[str, Any]:
    expect = _mapping(value, where)
    _only(expect, EXPECT_KEYS, where)
    for key in ("status", "duration"):
        if key in expect and not isinstance(expect[key], str):
            raise BadExpectations(f"{where}.{key} must be a string")
    if "path" in expect and not _strings(expect["path"]):
        raise BadExpectations(f"{where}.path must be a list of step keys")
    for key in ("steps", "errors"):
        if key in expect and not (
            isinstance(expect[key], dict) and all(isinstance(v, str) for v in expect[key].values())
        ):
            raise BadExpectations(f"{where}.{key} must map step keys to strings")
    for index, email in enumerate(expect.get("emails", [])):
        if isinstance(email, dict):
            _only(email, EMAIL_KEYS, f"{where}.emails[{index}]")
        elif not isinstance(email, str):
            raise BadExpectations(f"{where}.emails[{index}] must be a subject or a mapping")
    if not isinstance(expect.get("emails", []), list):
        raise BadExpectations(f"{where}.emails must be a list")
    return expect


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def unmet(expect: Mapping[str, Any], answer: Mapping[str, Any]) -> list[str]:
    """Each expectation the simulation's answer does not meet, as a sentence; [] if all hold.

    Without a `status`, the run is expected not to fail.
    """
    problems = []
    status = answer.get("status")
    wanted = expect.get("status")
    if wanted is not None and status != wanted:
        problems.append(f"the run ends {status}, expected {wanted}")
    if wanted is None and status == "failed":
        problems.append("the run fails" + _first_error(answer))
    if "duration" in expect and answer.get("duration") != expect["duration"]:
        problems.append(f"the run lasts {answer.get('duration')}, expected {expect['duration']}")
    steps = {step["key"]: step for step in answer.get("steps", [])}
    if "path" in expect:
        path = [s["key"] for s in answer.get("steps", []) if s["status"] in REACHED]
        if path != expect["path"]:
            problems.append(f"the path is {_arrows(path)}, expected {_arrows(expect['path'])}")
    for key, wanted_status in expect.get("steps", {}).items():
        got = steps.get(key, {}).get("status", "not reached")
        if got != wanted_status:
            problems.append(f"step {key} is {got}, expected {wanted_status}")
    for key, code in expect.get("errors", {}).items():
        error = steps.get(key, {}).get("error") or {}
        if error.get("code") != code:
            problems.append(
                f"step {key} fails with {error.get('code') or 'no error'}, expected {code}"
            )
    problems += _emails(expect.get("emails"), answer.get("emails", []))
    return problems


def _emails(expected: list[Any] | None, sent: list[Mapping[str, Any]]) -> list[str]:
    if expected is None:
        return []
    if len(sent) != len(expected):
        subjects = ", ".join(repr(e.get("subject")) for e in sent) or "none"
        return [f"{len(sent)} emails are sent ({subjects}), expected {len(expected)}"]
    problems = []
    for index, (want, email) in enumerate(zip(expected, sent, strict=True)):
        want = {"subject": want} if isinstance(want, str) else want
        label = f"email {index + 1} ({email.get('step_key')})"
        for key, got in (
            ("step", email.get("step_key")),
            ("subject", email.get("subject")),
            ("to", email.get("to")),
        ):
            if key in want and got != want[key]:
                problems.append(f"{label} has {key} {got!r}, expected {want[key]!r}")
        body = f"{email.get('html') or ''}\n{email.get('text') or ''}"
        if "contains" in want and str(want["contains"]) not in body:
            problems.append(f"{label} does not contain {want['contains']!r}")
    return problems


def _arrows(keys: Sequence[str]) -> str:
    return " → ".join(keys) or "(empty)"


def _first_error(answer: Mapping[str, Any]) -> str:
    for step in answer.get("steps", []):
        error = step.get("error")
        if error:
            return f" at {step['key']}: {error.get('message')} ({error.get('code')})"
    return ""
