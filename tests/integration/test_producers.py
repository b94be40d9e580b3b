"""Producers enqueue `automations.events.send` by name from their own process."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import func, select

from engine.db import transaction
from models.tables import Event, Run
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import ROOT, Stack
from tests.integration.markers import CELERY_BACKENDS


def count(stack: Stack, model: type) -> int:
    with transaction(stack.runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@CELERY_BACKENDS
def test_producer_process_enqueues_triggers_and_a_repeated_key_is_ingested_once(
    rt_stack: Stack,
) -> None:
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {"key": "tag", "type": "contact_update", "config": {"properties": {"from": "broker"}}},
    ]
    make_automation(rt_stack, steps, chain("start", "tag"))
    email = unique_email("produced")
    # A separate interpreter that imports only Celery (the example script), as a producer would.
    for _ in range(3):
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples" / "produce_events.py"),
                rt_stack.settings.broker_url,
                "user.created",
                email,
                '{"plan": "pro"}',
                "signup-4711",
            ],
            check=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
        )
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "produce_events.py"),
            rt_stack.settings.broker_url,
            "user.created",
            unique_email("other"),
        ],
        check=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    rt_stack.wait_for(lambda: count(rt_stack, Run) == 2, what="two runs from the producer")
    rt_stack.wait_for(
        lambda: all(r.status == "completed" for r in runs(rt_stack)), what="runs to complete"
    )
    assert count(rt_stack, Event) == 2


def runs(stack: Stack) -> list[Run]:
    with transaction(stack.runtime.sessions) as session:
        return list(session.scalars(select(Run)))
