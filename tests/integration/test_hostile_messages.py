"""Messages on our queue that no task can run, pushed the way a foreign producer would: each
is logged on one line and acked, the worker keeps running, and what queues behind it runs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis
from kombu import Connection, Exchange, Producer
from sqlalchemy import func, select

from engine.db import transaction
from models.tables import Contact, Event, RunStep
from tasks.dispatcher import VERSION_HEADER
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import Stack
from tests.integration.markers import CELERY_BACKENDS

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
STEP = "automations.steps.contact_update"
SEND = "automations.steps.send_email"
HOSTILE = "x-hostile"  # a header of this test's messages, which Celery ignores


def publish(stack: Stack, task: str, body: Any, **options: Any) -> str:
    """A message of `task` with this body, published with kombu alone."""
    task_id = str(uuid.uuid4())
    headers = {"task": task, "id": task_id, HOSTILE: True, **options.pop("headers", {})}
    if "content_type" not in options:
        options["serializer"] = "json"
    with Connection(stack.settings.broker_url) as connection:
        producer = Producer(connection.default_channel, exchange=Exchange(""))
        producer.publish(body, routing_key="automations", headers=headers, **options)
    return task_id


def hostile_messages(stack: Stack) -> dict[str, str]:
    run_id = str(uuid.uuid4())
    raw = {"content_type": "application/json", "content_encoding": "utf-8"}
    return {
        # Each of these used to stop the worker, and the next one after its redelivery.
        "body an object": publish(stack, STEP, {"run_id": run_id}),
        "body null": publish(stack, STEP, None),
        "body of two": publish(stack, STEP, [[], {"run_id": run_id, "step_key": "a"}]),
        "no id": publish(stack, STEP, [[], {}, EMBED], headers={"id": None}),
        "bad timelimit": publish(
            stack, STEP, [[], {"run_id": run_id, "step_key": "a"}, EMBED], headers={"timelimit": 5}
        ),
        # These ran and failed with a stack trace.
        "not json": publish(stack, STEP, b"{not json", **raw),
        "not a uuid": publish(stack, STEP, [[], {"run_id": "nope", "step_key": "a"}, EMBED]),
        "key not a string": publish(stack, STEP, [[], {"run_id": run_id, "step_key": 5}, EMBED]),
        "missing key": publish(stack, STEP, [[], {"run_id": run_id}, EMBED]),
        "extra kwarg": publish(
            stack, STEP, [[], {"run_id": run_id, "step_key": "a", "x": 1}, EMBED]
        ),
        "sweeper kwargs": publish(stack, "automations.sweeper.tick", [[1], {"x": 1}, EMBED]),
        "bulk not a uuid": publish(stack, "automations.runs.bulk", [[], {"bulk_id": "z"}, EMBED]),
        "cancel not a uuid": publish(
            stack, "automations.runs.cancel", [[], {"automation_id": 7}, EMBED]
        ),
        # An automation that does not exist, or whose cancel is over: nothing to cancel.
        "no such cancel": publish(
            stack, "automations.runs.cancel", [[], {"automation_id": run_id}, EMBED]
        ),
        "send unknown field": publish(
            stack, "automations.events.send", [[], {"event": "user.created", "x": 1}, EMBED]
        ),
        "send body an object": publish(stack, "automations.events.send", {"event": "e"}),
        "batch no events": publish(stack, "automations.events.send_batch", [[], {}, EMBED]),
        # A run that does not exist has no step to claim: nothing to do, nothing written.
        "no such run": publish(stack, STEP, [[], {"run_id": run_id, "step_key": "a"}, EMBED]),
        # A version header (tasks/dispatcher.py) that is no id, or no version's: no hint.
        "version not an id": publish(
            stack, SEND, [[], {"run_id": run_id, "step_key": "a"}, EMBED], headers=version("x")
        ),
        "no such version": publish(
            stack, SEND, [[], {"run_id": run_id, "step_key": "a"}, EMBED], headers=version(run_id)
        ),
    }


def version(value: str) -> dict[str, str]:
    return {VERSION_HEADER: value}


def settled(client: redis.Redis) -> bool:
    """None of this test's messages left on the queue, nor taken from it and unacked. (Not
    the whole unacked hash: the sweeper's ticks pass through it, and an earlier test's killed
    worker may have left entries there until their visibility timeout.)"""
    try:
        queued = [json.loads(raw) for raw in client.lrange("automations", 0, -1)]
    except ValueError:
        return False  # a garbage entry not yet dropped
    taken = [json.loads(raw)[0] for raw in client.hvals("unacked")]
    return not any(
        isinstance(message, dict) and HOSTILE in (message.get("headers") or {})
        for message in queued + taken
    )


@CELERY_BACKENDS
def test_malformed_messages_are_refused_on_one_line_and_the_worker_goes_on(
    rt_stack: Stack,
) -> None:
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {"key": "tag", "type": "contact_update", "config": {"properties": {"from": "x"}}},
    ]
    make_automation(rt_stack, steps, chain("start", "tag"))
    log = rt_stack.workdir / f"worker-{rt_stack.backend}.log"
    start = log.stat().st_size
    refused = hostile_messages(rt_stack)
    client = redis.Redis.from_url(rt_stack.settings.broker_url)
    try:
        # Entries that are no message at all: kombu stopped the worker on them.
        client.lpush("automations", b"garbage, not json", b'{"body": "no properties"}', b"[1]")
        (run_id,) = rt_stack.send("user.created", unique_email("behind")).run_ids
        assert rt_stack.wait_run(run_id).status == "completed"
        rt_stack.wait_for(lambda: settled(client), what="every message on the queue acked")
    finally:
        client.close()
    assert rt_stack.worker is not None and rt_stack.worker.poll() is None
    with log.open("rb") as lines:
        lines.seek(start)
        written = lines.read().decode()
    assert "Traceback" not in written and "Unrecoverable" not in written
    assert "Connection to broker lost" not in written
    for name, task_id in refused.items():
        if name in (
            "not a uuid",
            "key not a string",
            "bulk not a uuid",
            "cancel not a uuid",
            "no id",
            "no such run",
            "no such cancel",
            "version not an id",
            "no such version",
        ):
            continue  # refused by the task, or without an id to name
        said = [line for line in written.splitlines() if task_id in line]
        assert len(said) == 1 and "message refused" in said[0], (name, said)
    assert (
        "no task id" in written
        and written.count("is not an id") == 3
        and "is not a string" in written
    )
    assert written.count("dropped an entry of a queue that is not a message") == 3
    with transaction(rt_stack.runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1
        assert session.scalar(select(func.count()).select_from(RunStep)) == 2


@CELERY_BACKENDS
def test_an_idempotency_key_the_database_cannot_hold_is_refused_alone(rt_stack: Stack) -> None:
    steps = [{"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}]
    make_automation(rt_stack, steps, [])
    log = rt_stack.workdir / f"worker-{rt_stack.backend}.log"
    start = log.stat().st_size
    bad_keys = {"too long": "k" * 257, "an object": {"a": 1}, "NUL": "a\x00b", "a bool": True}
    good = [unique_email(f"good{n}") for n in range(4)]
    with rt_stack.app.producer_or_acquire() as producer:

        def send(task: str, kwargs: dict[str, Any]) -> str:
            sent = rt_stack.app.send_task(
                task, kwargs=kwargs, queue="automations", producer=producer
            )
            return str(sent.id)

        # Single messages in one group: the bad ones are refused, the good one commits.
        singles = {
            name: send(
                "automations.events.send",
                {"event": "user.created", "email": unique_email("bad"), "idempotency_key": key},
            )
            for name, key in bad_keys.items()
        }
        send("automations.events.send", {"event": "user.created", "email": good[0]})
        # An integer key is its digits, as it was stored before keys were checked.
        numbered = {"event": "user.created", "email": good[3], "idempotency_key": 7}
        send("automations.events.send", numbered)
        batch = send(
            "automations.events.send_batch",
            {
                "events": [
                    {"event": "user.created", "email": good[1]},
                    {"event": "user.created", "email": good[2], "idempotency_key": "k" * 300},
                ]
            },
        )
    text = ""

    def all_logged() -> bool:
        nonlocal text
        with log.open("rb") as lines:
            lines.seek(start)
            text = lines.read().decode()
        return all(f"(task {task_id})" in text for task_id in [*singles.values(), batch])

    rt_stack.wait_for(all_logged, what="every bad key refused")
    assert "Traceback" not in text
    said = [line for line in text.splitlines() if "refused (task" in line]
    assert len(said) == len(bad_keys) + 1
    assert all("`idempotency_key` must be a string of 1 to 256 characters" in x for x in said)
    assert f"event 1 refused (task {batch})" in text  # the batch names the event, and is refused
    rt_stack.wait_for(
        lambda: sorted(events(rt_stack)) == sorted([good[0], good[3]]), what="the good events"
    )
    with transaction(rt_stack.runtime.sessions) as session:
        keys = session.scalars(select(Event.idempotency_key).where(Event.idempotency_key == "7"))
        assert list(keys) == ["7"]


def events(stack: Stack) -> list[str]:
    with transaction(stack.runtime.sessions) as session:
        return [
            email
            for (email,) in session.execute(
                select(Contact.email).join(Event, Event.contact_id == Contact.id)
            )
        ]
