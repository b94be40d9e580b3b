"""Producers enqueue `automations.events.send` by name from their own process."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select

from engine.db import transaction
from models.tables import Contact, Event, Run
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import ROOT, Stack
from tests.integration.markers import CELERY_BACKENDS, POSTGRES_ONLY


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


@CELERY_BACKENDS
def test_a_producer_event_that_breaks_the_rules_is_refused_with_one_log_line(
    rt_stack: Stack,
) -> None:
    deep: dict[str, object] = {}
    for _ in range(40):
        deep = {"a": deep}
    refused = {
        "list": {"email": "victim@example.test, attacker@evil.test"},
        "blank": {"email": "@example.test"},
        "deep": {"email": unique_email("deep"), "payload": deep},
    }
    log = rt_stack.workdir / f"worker-{rt_stack.backend}.log"
    start = log.stat().st_size
    task_ids = {
        name: rt_stack.app.send_task(
            "automations.events.send",
            kwargs={"event": "user.created", **kwargs},
            queue="automations",
        ).id
        for name, kwargs in refused.items()
    }

    def logged(task_id: str) -> list[str]:
        return [line for line in log.read_text().splitlines() if f"(task {task_id})" in line]

    for name, task_id in task_ids.items():
        rt_stack.wait_for(lambda t=task_id: bool(logged(t)), what=f"the {name} event refused")
    [listed] = logged(task_ids["list"])
    assert "must be exactly one address, not a list" in listed
    [deeper] = logged(task_ids["deep"])
    assert "more than 32 levels deep" in deeper
    with log.open("rb") as lines:
        lines.seek(start)
        assert b"Traceback" not in lines.read()  # one line each, no stack trace
    assert count(rt_stack, Event) == 0
    assert count(rt_stack, Contact) == 0


@CELERY_BACKENDS
def test_producer_process_enqueues_a_batch_in_one_message(rt_stack: Stack) -> None:
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {"key": "tag", "type": "contact_update", "config": {"properties": {"from": "batch"}}},
    ]
    make_automation(rt_stack, steps, chain("start", "tag"))
    emails = [unique_email(f"batch{n}") for n in range(3)]
    # The example's batch form, from an interpreter that imports only Celery.
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "produce_events.py"),
            "--batch",
            rt_stack.settings.broker_url,
            "user.created",
            *emails,
            '{"plan": "pro"}',
        ],
        check=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    rt_stack.wait_for(lambda: count(rt_stack, Run) == 3, what="a run per event of the batch")
    rt_stack.wait_for(
        lambda: all(r.status == "completed" for r in runs(rt_stack)), what="runs to complete"
    )
    with transaction(rt_stack.runtime.sessions) as session:
        stored = {e.payload["plan"] for e in session.scalars(select(Event))}
    assert stored == {"pro"} and count(rt_stack, Contact) == 3


@CELERY_BACKENDS
def test_a_batch_is_all_or_nothing_and_its_keys_ingest_once(rt_stack: Stack) -> None:
    steps = [{"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}]
    make_automation(rt_stack, steps, [])
    good = {"event": "user.created", "email": unique_email("good")}
    log = rt_stack.workdir / f"worker-{rt_stack.backend}.log"
    bad_batch = [good, {"event": "user.created", "email": "not an address"}]
    refused = rt_stack.app.send_task(
        "automations.events.send_batch", kwargs={"events": bad_batch}, queue="automations"
    ).id
    rt_stack.wait_for(lambda: f"(task {refused})" in log.read_text(), what="the batch refused")
    line = next(x for x in log.read_text().splitlines() if f"(task {refused})" in x)
    assert "event 1 refused" in line
    assert count(rt_stack, Event) == 0 and count(rt_stack, Contact) == 0

    keyed = [
        {**good, "idempotency_key": "order-1"},
        {"event": "user.created", "email": unique_email("second"), "idempotency_key": "order-2"},
    ]
    sent = [  # a producer's retry: the same keys again, nothing new stored
        rt_stack.app.send_task(
            "automations.events.send_batch", kwargs={"events": keyed}, queue="automations"
        ).id
        for _ in range(2)
    ]
    for task_id in sent:
        done = f"send_batch[{task_id}] succeeded"
        rt_stack.wait_for(lambda d=done: d in log.read_text(), what="both batches ingested")
    assert count(rt_stack, Event) == 2 and count(rt_stack, Run) == 2


PROBE = "automations-test-probe"


@contextmanager
def task_events(stack: Stack, handlers: dict[str, Any]) -> Iterator[None]:
    """A worker that sends task events, and a receiver handing them to `handlers` meanwhile."""
    stack.restart_worker(AUTOMATIONS_TASK_EVENTS="true")
    with stack.app.connection_for_read() as connection:
        heard = threading.Event()
        receiver = stack.app.events.Receiver(
            connection, handlers={**handlers, PROBE: lambda _: heard.set()}
        )
        listening = threading.Thread(target=receiver.capture, kwargs={"limit": None}, daemon=True)
        listening.start()
        try:
            # On Redis, events are published to subscribers only: an event sent before the
            # receiver's subscription is in place is lost. Probes until one is heard.
            with stack.app.events.default_dispatcher() as probing:
                stack.wait_for(
                    lambda: (probing.send(PROBE), heard.wait(0.2))[1],
                    what="the receiver to hear events",
                )
            yield
        finally:
            receiver.should_stop = True
            listening.join(10)
            stack.restart_worker()


@POSTGRES_ONLY
def test_flower_sees_a_producers_event_without_its_address_or_payload(rt_stack: Stack) -> None:
    """The task events Flower lists showed each message's keyword arguments as the producer
    wrote them: the contact's address and the payload, to whoever watches Flower."""
    received: list[dict[str, Any]] = []
    with task_events(rt_stack, {"task-received": received.append}):
        single, batch = unique_email("flower-one"), unique_email("flower-batch")
        secret_plan = "plan-nobody-should-see-in-flower"
        payload = {"plan": secret_plan}
        rt_stack.app.send_task(
            "automations.events.send",
            kwargs={"event": "user.created", "email": single, "payload": payload},
            queue="automations",
        )
        rt_stack.app.send_task(
            "automations.events.send_batch",
            kwargs={"events": [{"event": "user.created", "email": batch, "payload": payload}]},
            queue="automations",
        )
        rt_stack.wait_for(lambda: count(rt_stack, Event) == 2, what="both events ingested")
        rt_stack.wait_for(lambda: len(received) >= 2, what="both task-received events")
    shown = " ".join(str(event.get("kwargs")) for event in received)
    assert "user.created" in shown and "'email': '***'" in shown
    for private in (single, batch, secret_plan):
        assert private not in shown, shown


@POSTGRES_ONLY
def test_an_event_refused_for_its_address_shows_the_rule_not_the_address(
    rt_stack: Stack,
) -> None:
    """The refusal's line in the worker's log, the task's result in that log and in Flower (a
    task-succeeded event) quoted the address the producer sent: now the field and the rule."""
    addresses = {
        "list": f"{unique_email('victim-a')}, {unique_email('victim-b')}",
        "spaces": "victim c@example.test",
        "two ats": "victim-d@@example.test",
        "idn": "victim-e@bad\u200d-\u00e9.test",
    }
    log = rt_stack.workdir / f"worker-{rt_stack.backend}.log"
    succeeded: list[dict[str, Any]] = []
    with task_events(rt_stack, {"task-succeeded": succeeded.append}):
        start = log.stat().st_size
        task_ids = [
            rt_stack.app.send_task(
                "automations.events.send",
                kwargs={"event": "user.created", "email": address},
                queue="automations",
            ).id
            for address in addresses.values()
        ]
        batch = [{"event": "user.created", "email": address} for address in addresses.values()]
        task_ids.append(
            rt_stack.app.send_task(
                "automations.events.send_batch", kwargs={"events": batch}, queue="automations"
            ).id
        )
        rt_stack.wait_for(
            lambda: {event.get("uuid") for event in succeeded} >= set(task_ids),
            what="every refusal's task-succeeded event",
        )
    with log.open() as lines:
        lines.seek(start)
        logged = lines.read()
    for task_id in task_ids:
        assert f"(task {task_id})" in logged  # the refusal is still one line, with its task
    results = " ".join(str(event.get("result")) for event in succeeded)
    assert "must not contain spaces" in logged and "must not contain spaces" in results
    for address in addresses.values():
        for part in (address, *address.replace(",", " ").split()):
            if "victim" in part:
                assert part not in logged, part
                assert part not in results, part
