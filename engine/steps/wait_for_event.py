"""wait_for_event: park until the contact sends the awaited event, or time out."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from engine.conditions import evaluate, validate_rule
from engine.durations import MAX_DURATION, parse_duration
from engine.errors import StepFailure
from engine.outcomes import Completed, Failed, Outcome, Waiting
from engine.step_configs import event_name_config, only_keys
from engine.step_types import StepTypeSpec
from engine.steps.context import StepRun
from engine.steps.trigger import event_summary
from engine.store import contacts as contact_store
from engine.store import events as event_store
from engine.store import runs as run_store
from models.enums import ConnectionType, StepType


def check_wait_for_event(config: dict[str, Any], at: str) -> dict[str, Any]:
    only_keys(config, {"event_name", "timeout", "filter_rule"}, at, "wait_for_event config")
    event_name_config(config, at)
    if "timeout" in config:
        parse_duration(config["timeout"], field=f"{at}.timeout")
    if "filter_rule" in config:
        validate_rule(config["filter_rule"], field=f"{at}.filter_rule")
    return config


def event_output(
    event_id: uuid.UUID, name: str, payload: dict[str, Any], received_at: dt.datetime
) -> dict[str, Any]:
    """A received event as the wait step's output; `wait_events.<name>.*` reads its payload."""
    return {
        "event_id": str(event_id),
        "event": name,
        "payload": payload,
        "received_at": received_at.isoformat(),
    }


def matches_filter(
    config: dict[str, Any], payload: dict[str, Any], contact: dict[str, Any]
) -> bool:
    """Whether an event passes the wait's filter_rule; a rule that cannot be evaluated does not."""
    rule = config.get("filter_rule")
    if rule is None:
        return True
    try:
        return evaluate(rule, {"event": payload, "contact": contact, "wait_events": {}})
    except StepFailure:
        return False


def run_wait_for_event(sr: StepRun) -> Outcome:
    if sr.first_execution:
        return _register(sr)
    return _time_out(sr)


def _register(sr: StepRun) -> Outcome:
    config = sr.step.config
    name = config["event_name"]
    contact = sr.run.contact
    assert contact is not None
    # The claim locked the run's contact before the step (SPEC.locks_contact). Ingestion takes
    # the same lock, so an event is either committed before we look (we find it below) or sees
    # our waiting row after we commit (it resumes us): never neither.
    sr.rt.checkpoint("wait_for_event.locked")
    view = contact_store.contact_view(contact)
    since = sr.claimed.created_at
    taken: set[str] | None = None
    for event in event_store.events_since(
        sr.session, contact_id=contact.id, name=name, since=since
    ):
        # The run's first steps are created at the instant its trigger event is received: that
        # event started the run, and is not one it waits for (a wait for the next order).
        if event.id == sr.run.run.event_id:
            continue
        # Likewise a wait's successor is created at the instant its event is received: an
        # event that ended an earlier wait of the run is not also the one this wait awaits.
        if taken is None:
            taken = _events_received(sr)
        if str(event.id) in taken:
            continue
        if matches_filter(config, event.payload, view):
            output = event_output(event.id, event.name, event.payload, event.received_at)
            return Completed(branch=ConnectionType.EVENT_RECEIVED, output=output)
    timeout = parse_duration(config["timeout"]) if "timeout" in config else MAX_DURATION
    timeout_at = sr.now + timeout * sr.rt.settings.time_scale
    return Waiting(
        due_at=timeout_at,
        wait_event=name,
        output={"event_name": name, "timeout_at": timeout_at.isoformat()},
    )


def _events_received(sr: StepRun) -> set[str]:
    """The ids of the events the run's earlier waits received."""
    outputs = run_store.wait_outputs(sr.session, sr.claimed.run_id)
    return {str(output.get("event_id")) for output in outputs}


def _time_out(sr: StepRun) -> Outcome:
    config = sr.step.config
    name = config["event_name"]
    output = {"event_name": name, "timed_out": True}
    if sr.graph.next_steps(sr.step.key, ConnectionType.TIMEOUT):
        return Completed(branch=ConnectionType.TIMEOUT, output=output)
    waited = config.get("timeout", "30 days")
    return Failed(
        f"Timed out after {waited} waiting for event `{name}`", "wait_timeout", output=output
    )


SPEC = StepTypeSpec(
    name=StepType.WAIT_FOR_EVENT,
    check_config=check_wait_for_event,
    handler=run_wait_for_event,
    connection_types=frozenset({ConnectionType.EVENT_RECEIVED, ConnectionType.TIMEOUT}),
    label="wait for event",
    instant=False,
    summary=event_summary,
    locks_contact=True,
)
