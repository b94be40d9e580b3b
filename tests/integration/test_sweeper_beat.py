"""The sweeper's tick as beat sends it, to a worker on another host.

Celery's `expires` is an absolute time, made from the sending host's clock and compared with
the receiving worker's: with a one-interval expiry, a worker whose clock was a few seconds
ahead of beat's discarded every tick as expired, and no timer, lost message or abandoned step
was ever swept again.
"""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest

from engine.db import transaction
from engine.ingest import ingest_event
from tasks.app import celery_config
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
UPDATE = {"key": "after", "type": "contact_update", "config": {"first_name": "Swept"}}
BEHIND = dt.timedelta(seconds=30)


def test_a_tick_from_a_beat_host_whose_clock_is_behind_is_run(rt_stack: Stack) -> None:
    make_automation(rt_stack, [TRIGGER, UPDATE], chain("start", "after"))
    rt = rt_stack.runtime
    with transaction(rt.sessions) as session:  # its message is never sent: only a tick finds it
        ingested = ingest_event(
            session, rt, event="user.created", email=unique_email(), now=rt.clock.now()
        )
    (run_id,) = ingested.run_ids
    rt_stack.clock.advance(dt.timedelta(seconds=rt_stack.settings.stale_after_seconds + 1))

    entry = celery_config(rt_stack.settings)["beat_schedule"]["automations-sweeper"]
    app = rt_stack.app
    beat_host_now = dt.datetime.now(dt.UTC) - BEHIND
    with mock.patch.object(type(app), "now", lambda self: beat_host_now):
        app.send_task(entry["task"], **entry["options"])

    assert rt_stack.wait_run(run_id, timeout=20).status == "completed"
