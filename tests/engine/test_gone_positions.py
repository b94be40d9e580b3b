"""A deleted item's place in its list, kept for the page cursors that name it, then forgotten."""

from __future__ import annotations

import datetime as dt

import pytest

from engine import contacts, reports
from engine.db import transaction
from engine.errors import InvalidInput
from engine.json_limits import JsonLimits
from engine.store import paging
from engine.sweeper import sweep
from models.housekeeping import GonePosition
from tests.engine.driver import Driver


def test_a_deleted_contact_is_a_cursor_for_a_week(driver: Driver) -> None:
    start = driver.clock.now()
    with transaction(driver.rt.sessions) as session:
        made = [
            contacts.create_contact(
                session,
                email=f"c{n}@example.test",
                now=start + dt.timedelta(seconds=n),
                limits=JsonLimits(),
            ).id
            for n in range(3)
        ]
        contacts.delete_contact(session, str(made[1]), now=start)
    with transaction(driver.rt.sessions) as session:
        page = contacts.list_contacts(session, limit=5, after=made[1])
        assert [c.id for c in page.items] == [made[0]]

    with transaction(driver.rt.sessions) as session:
        sweep(session, driver.rt, now=start + paging.GONE_KEPT)
        assert session.get(GonePosition, made[1]) is not None  # a week to the microsecond
        sweep(session, driver.rt, now=start + paging.GONE_KEPT + dt.timedelta(seconds=1))
        assert session.get(GonePosition, made[1]) is None


def test_a_deleted_item_is_no_cursor_of_another_kind_of_list(driver: Driver) -> None:
    """A deleted contact's place is a place among contacts, not among segments or runs: its id
    there is refused as an id never seen is."""
    template = driver.template()
    email = {"key": "mail", "type": "send_email", "config": {"template": {"id": template}}}
    trigger = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
    automation_id = driver.automation([trigger, email], [{"from": "start", "to": "mail"}])
    with transaction(driver.rt.sessions) as session:
        contact = contacts.create_contact(
            session, email="gone@example.test", now=driver.clock.now(), limits=JsonLimits()
        )
        contacts.delete_contact(session, str(contact.id), now=driver.clock.now())
    with transaction(driver.rt.sessions) as session:
        assert contacts.list_contacts(session, limit=5, after=contact.id).items == []
        with pytest.raises(InvalidInput) as refused:
            contacts.list_segments(session, limit=5, after=contact.id)
        assert refused.value.field == "after"
        with pytest.raises(InvalidInput):
            reports.list_runs(
                session, automation_id, status=None, limit=5, after=None, before=contact.id
            )
