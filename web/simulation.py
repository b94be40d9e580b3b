"""The Simulate tab of an automation: play a run of its current version on virtual time, show
the path and the emails it would send. Nothing is stored or sent."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from engine import contacts, dashboard
from engine.errors import InvalidInput
from engine.scenario import parse_later_event, parse_scenario
from engine.simulation import SimulatedEmail, SimulatedStep, Simulation, simulate
from web import links
from web.guard import Form, Rt, User, viewing
from web.render import CSP, page

router = APIRouter(include_in_schema=False)
FIELDS = (
    *("contact", "first_name", "last_name", "unsubscribed", "properties"),
    *("payload", "then", "until"),
)
KNOWN_CONTACTS = 20
# Rendered emails keep their own inline styles (in a sandboxed frame that runs no script);
# remote images stay blocked, as a careful mail client does.
EMAIL_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


@dataclass(frozen=True)
class Moment:
    """One line of the timeline: a step, or a later event arriving."""

    at: Any
    step: SimulatedStep | None = None
    event_name: str | None = None
    resumed: str | None = None
    email: SimulatedEmail | None = None


def _base(request: Request, automation_id: uuid.UUID) -> str:
    return f"{links.root(request.scope.get('root_path'))}/automations/{automation_id}"


@router.get("/automations/{automation_id}/simulate")
def simulate_form(request: Request, automation_id: str, rt: Rt, user: User) -> Response:
    """The form: a contact, the trigger event's payload, later events."""
    key = links.parse_uuid(automation_id)
    shown = _shown(rt, user, key)
    form = {name: "" for name in FIELDS} | {"payload": "{}", "properties": "{}"}
    return _answer(request, key, shown, form, result=None, error=None)


@router.post("/automations/{automation_id}/simulate")
def simulate_run(request: Request, automation_id: str, rt: Rt, user: User, form: Form) -> Response:
    """Simulate with the form's inputs and show the result under the form."""
    key = links.parse_uuid(automation_id)
    shown = _shown(rt, user, key)  # first: a revoked key or an unknown automation stop here
    values = {name: form.get(name, "") for name in FIELDS}
    result, error = None, None
    try:
        result = simulate(rt, parse_scenario(_request(key, values)))
    except InvalidInput as problem:
        error = problem.message
    return _answer(request, key, shown, values, result=result, error=error)


def _shown(rt: Rt, user: User, key: uuid.UUID) -> tuple[dashboard.AutomationView, list[str]]:
    """The automation's header, and recent contacts' emails to pick from."""
    with viewing(rt, user) as session:
        view = dashboard.automation_view(session, key)
        known = [c.email for c in contacts.list_contacts(session, limit=KNOWN_CONTACTS).items]
    return view, known


def _answer(
    request: Request,
    key: uuid.UUID,
    shown: tuple[dashboard.AutomationView, list[str]],
    form: dict[str, str],
    *,
    result: Simulation | None,
    error: str | None,
) -> Response:
    view, known = shown
    answer = page(
        request,
        "automation_simulate.html",
        status_code=422 if error else 200,
        view=view,
        tab="simulate",
        base=_base(request, key),
        form=form,
        known=known,
        result=result,
        timeline=_timeline(result) if result else [],
        error=error,
    )
    answer.headers["Content-Security-Policy"] = EMAIL_CSP
    return answer


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _json_object(text: str, label: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{label} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    except RecursionError:  # json recurses once per level: a hostile form ends it
        raise InvalidInput(
            f"{label} is nested too deeply (objects and arrays within each other)"
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput(f'{label} must be a JSON object, e.g. {{"plan": "pro"}}')
    return value


def _request(key: uuid.UUID, form: dict[str, str]) -> dict[str, Any]:
    """The simulation request the form describes: the contact by id or email (a stored one,
    with the form's fields over it, or a new one); later events one per line."""
    ref = form["contact"].strip()
    contact: dict[str, Any] = {"id": ref} if _is_uuid(ref) else {"email": ref}
    for name in ("first_name", "last_name"):
        if form[name].strip():
            contact[name] = form[name].strip()
    if form["unsubscribed"]:
        contact["unsubscribed"] = True
    properties = _json_object(form["properties"], "Contact properties")
    if properties:
        contact["properties"] = properties
    events = []
    for number, line in enumerate(form["then"].splitlines(), start=1):
        if line.strip():
            try:
                events.append(parse_later_event(line.strip()))
            except InvalidInput as problem:
                raise InvalidInput(f"Later events, line {number}: {problem.message}") from None
    body: dict[str, Any] = {
        "automation_id": str(key),
        "contact": contact,
        "event": {"payload": _json_object(form["payload"], "The event payload")},
        "events": events,
    }
    if form["until"].strip():
        body["until"] = form["until"].strip()
    return body


def _timeline(result: Simulation) -> list[Moment]:
    """Steps and later events by time; at one time, an event before the steps it set off."""
    emails = {email.step_key: email for email in result.emails}
    moments = [
        (event.at, 0, index, Moment(event.at, event_name=event.name, resumed=event.resumed))
        for index, event in enumerate(result.events)
    ]
    moments += [
        (step.at, 1, index, Moment(step.at, step=step, email=emails.get(step.key)))
        for index, step in enumerate(result.steps)
    ]
    return [moment for *_, moment in sorted(moments, key=lambda m: m[:3])]
