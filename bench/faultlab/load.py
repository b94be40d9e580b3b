"""The load: one automation with instant steps, email, delay and wait, and contacts that behave
differently."""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from engine.clock import FrozenClock
from engine.db import transaction
from engine.ingest import Ingested, ingest_event
from engine.lifecycle import create_automation
from engine.runtime import Runtime
from engine.store import content as content_store
from engine.store import segments as segment_store
from models.enums import DomainStatus, TemplateStatus

SIGNUP, PAID = "user.created", "order.paid"
WELCOME, PAUSE, AWAIT, RECEIPT, LATE = "welcome", "pause", "await_paid", "receipt", "late"
SENDS = (WELCOME, RECEIPT)
# Instant steps in a row, which a worker runs inline (up to AUTOMATIONS_INLINE_STEPS): four
# between the trigger and the welcome, two after the receipt, two from the timeout on.
KNOWN, NAMED, JOINED, STAGED = "known", "named", "joined", "staged"
THANKED, FILED, LAPSED = "thanked", "filed", "lapsed"
HEAD = (KNOWN, NAMED, JOINED, STAGED)
# The segments the run's contact joins: every one at JOINED, a paying one at FILED as well.
MEMBERS, PAYING = "members", "paying"
# The second automation of a scenario that stops one mid-load: a welcome, then a long delay.
DRIP_NAME, TIP, TIP_DELAY, TIP_AFTER = "drip", "tip", "tip_delay", "tip_after"
SUBJECTS = {WELCOME: "Welcome aboard", RECEIPT: "Your receipt", TIP: "A tip to start"}
DOMAIN = "acme.test"
T = TypeVar("T")


@dataclass
class Contact:
    """A contact of the load and what it will do: pay while waiting, stay silent, or race."""

    email: str
    plan: str  # "paid", "silent" or "race" (order.paid at the instant the wait times out)
    delta_us: int = 0  # for "race": the event is stamped this long before the timeout
    flaky: bool = False  # the SMTP sink answers 451 to its first message
    run_id: uuid.UUID | None = None
    race_resumed: bool | None = None  # what ingestion reported; None when not known
    race_timed_out: bool | None = None  # whether the timeout claimed the step


def plan_contacts(
    rng: random.Random, runs: int, *, race_share: float, paid_share: float = 0.4
) -> list[Contact]:
    contacts = []
    for i in range(runs):
        draw = rng.random()
        plan = (
            "race" if draw < race_share else "paid" if draw < race_share + paid_share else "silent"
        )
        delta = rng.choice((0, 1, 1000)) if plan == "race" else 0
        flaky = rng.random() < 0.1
        contacts.append(Contact(f"{plan}-{i:05d}@example.test", plan, delta, flaky))
    return contacts


def retrying(action: Callable[[], T], *, attempts: int = 40, pause: float = 0.25) -> T:
    """Run a transaction again when the database dropped us (a cut connection)."""
    for attempt in range(attempts):
        try:
            return action()
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


def frozen(rt: Runtime, now: dt.datetime, *, one_step: bool = False) -> Runtime:
    """The same sessions and transport, with the clock stopped at `now`.

    `one_step`: no instant step runs inline after the one executed, so that what
    `execute_step` returns tells whether it claimed that step (the steps it readied).
    """
    settings = rt.settings.model_copy(update={"inline_steps": 0}) if one_step else rt.settings
    return Runtime(settings, sessions=rt.sessions, clock=FrozenClock(now), transport=rt.transport)


def ingest(rt: Runtime, event: str, email: str, key: str) -> Ingested:
    """Ingest once; a retry after an unknown outcome is deduplicated by the idempotency key."""

    def once() -> Ingested:
        with transaction(rt.sessions) as session:
            return ingest_event(
                session, rt, event=event, email=email, idempotency_key=key, now=rt.clock.now()
            )

    return retrying(once)


def define_automation(rt: Runtime, now: dt.datetime, *, drip: bool = False) -> uuid.UUID | None:
    """trigger -> known (condition) -> named -> joined -> staged -> welcome -> delay 1 hour ->
    wait order.paid 1 day -> receipt -> thanked -> filed | late -> lapsed; with `drip`, a second
    automation on the same event: trigger -> tip -> delay 2 days -> an update, whose id is
    returned."""
    with transaction(rt.sessions) as session:
        content_store.create_domain(session, name=DOMAIN, now=now, status=DomainStatus.VERIFIED)
        ids = {}
        for key, subject in SUBJECTS.items():
            template = content_store.create_template(
                session,
                name=key,
                now=now,
                status=TemplateStatus.PUBLISHED,
                subject=subject,
                sender=f"Acme <hello@{DOMAIN}>",
                html="<p>Hi {{{FIRST_NAME}}}</p>",
                text_body="Hi {{{FIRST_NAME}}}",
                variables=[{"key": "FIRST_NAME", "type": "string", "fallback_value": "there"}],
            )
            ids[key] = str(template.id)
        segments = {
            name: str(segment_store.create_segment(session, name=name, now=now).id)
            for name in (MEMBERS, PAYING)
        }
        steps, connections = _main_graph(ids, segments)
        create_automation(
            session, name="faults", steps=steps, connections=connections, status="enabled", now=now
        )
        return _define_drip(session, ids[TIP], now) if drip else None


def _email(key: str, template_id: str) -> dict[str, Any]:
    mail = {"FIRST_NAME": {"var": "contact.first_name"}}
    return {
        "key": key,
        "type": "send_email",
        "config": {"template": {"id": template_id, "variables": mail}},
    }


def _update(key: str, **changes: Any) -> dict[str, Any]:
    return {"key": key, "type": "contact_update", "config": changes}


def _join(key: str, segment_id: str) -> dict[str, Any]:
    return {"key": key, "type": "add_to_segment", "config": {"segment_id": segment_id}}


def _chain(*keys: str) -> list[dict[str, str]]:
    return [{"from": a, "to": b} for a, b in pairwise(keys)]


def _main_graph(
    ids: dict[str, str], segments: dict[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    every_contact = {"field": "contact.email", "operator": "ends_with", "value": "@example.test"}
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": SIGNUP}},
        {"key": KNOWN, "type": "condition", "config": {"rule": every_contact}},
        _update(NAMED, first_name="Ada"),
        _join(JOINED, segments[MEMBERS]),
        _update(STAGED, properties={"stage": "welcomed"}),
        _email(WELCOME, ids[WELCOME]),
        {"key": PAUSE, "type": "delay", "config": {"duration": "1 hour"}},
        {
            "key": AWAIT,
            "type": "wait_for_event",
            "config": {"event_name": PAID, "timeout": "1 day"},
        },
        _email(RECEIPT, ids[RECEIPT]),
        _update(THANKED, properties={"stage": "paid"}),
        _join(FILED, segments[PAYING]),
        _update(LATE, first_name="Late"),
        _update(LAPSED, properties={"stage": "lapsed"}),
    ]
    connections = [
        {"from": "start", "to": KNOWN},
        {"from": KNOWN, "to": NAMED, "type": "condition_met"},
        *_chain(NAMED, JOINED, STAGED, WELCOME, PAUSE, AWAIT),
        {"from": AWAIT, "to": RECEIPT, "type": "event_received"},
        *_chain(RECEIPT, THANKED, FILED),
        {"from": AWAIT, "to": LATE, "type": "timeout"},
        *_chain(LATE, LAPSED),
    ]
    return steps, connections


def _define_drip(session: Session, template_id: str, now: dt.datetime) -> uuid.UUID:
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": SIGNUP}},
        _email(TIP, template_id),
        {"key": TIP_DELAY, "type": "delay", "config": {"duration": "2 days"}},
        _update(TIP_AFTER, last_name="Tipped"),
    ]
    connections = _chain("start", TIP, TIP_DELAY, TIP_AFTER)
    tips = create_automation(
        session, name=DRIP_NAME, steps=steps, connections=connections, status="enabled", now=now
    )
    return tips.id
