"""The Celery app carries the durability settings of docs/durability.md (no broker is contacted)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest

from engine.dispatch import Dispatch
from engine.settings import Settings
from models.enums import StepType
from tasks import step_messages
from tasks.app import TickGate, celery_config, create_celery_app
from tasks.dispatcher import VERSION_HEADER, step_headers


def test_durable_settings() -> None:
    app = create_celery_app(Settings(broker_url="redis://127.0.0.1:1/0"))
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and list(conf.accept_content) == ["json"]
    assert conf.broker_transport_options["visibility_timeout"] == 3600
    assert conf.beat_schedule["automations-sweeper"]["task"] == "automations.sweeper.tick"


def test_every_task_has_a_stable_name() -> None:
    app = create_celery_app(Settings())
    names = {name for name in app.tasks if name.startswith("automations.")}
    assert names == {
        *(f"automations.steps.{t.value}" for t in StepType),
        "automations.sweeper.tick",
        "automations.events.send",
        "automations.events.send_batch",
        "automations.runs.bulk",
        "automations.runs.cancel",
    }


def test_countdown_horizon_must_stay_under_visibility_timeout() -> None:
    settings = Settings(countdown_horizon_seconds=7200, visibility_timeout_seconds=3600)
    with pytest.raises(ValueError, match="VISIBILITY_TIMEOUT"):
        create_celery_app(settings)


def test_a_step_message_written_directly_is_the_one_celery_would_write() -> None:
    app = create_celery_app(Settings(broker_url="redis://127.0.0.1:1/0"))
    kwargs = {"run_id": "8d3f0c2e-0000-4000-8000-000000000000", "step_key": "mail"}
    celery = app.amqp.as_task_v2("the-id", "automations.steps.send_email", kwargs=kwargs)
    entry = json.loads(
        step_messages.encode(
            "automations.steps.send_email", kwargs, queue="automations", origin="o", countdown=5
        )
    )
    headers = entry["headers"]
    assert set(headers) == set(celery.headers)
    for same in ("lang", "task", "shadow", "expires", "retries", "timelimit", "kwargsrepr"):
        assert headers[same] == celery.headers[same], same
    assert headers["root_id"] == headers["id"] == entry["properties"]["correlation_id"]
    assert dt.datetime.fromisoformat(headers["eta"]) > dt.datetime.now(dt.UTC)
    body = json.loads(base64.b64decode(entry["body"]))
    assert body == [list(celery.body[0]), celery.body[1], celery.body[2]]
    assert entry["properties"]["delivery_info"] == {"exchange": "", "routing_key": "automations"}


def test_a_step_messages_ids_are_distinct_version_4_uuids() -> None:
    seen: set[str] = set()
    for _ in range(2_000):
        entry = json.loads(step_messages.encode("t", {}, queue="q", origin="o"))
        ids = (entry["headers"]["id"], entry["properties"]["delivery_tag"])
        for text in ids:
            parsed = uuid.UUID(text)
            assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
        seen.update(ids)
    assert len(seen) == 4_000


def test_a_send_names_its_runs_version_in_a_header_as_celery_would() -> None:
    run, version = uuid.uuid4(), uuid.uuid4()
    send = Dispatch(run, "mail", StepType.SEND_EMAIL, version_id=version)
    assert step_headers(send) == {VERSION_HEADER: str(version)}
    # Only a step whose claim reads for it, and only where the sender knows the version.
    assert step_headers(Dispatch(run, "tag", StepType.CONTACT_UPDATE, version_id=version)) is None
    assert step_headers(Dispatch(run, "mail", StepType.SEND_EMAIL)) is None
    app = create_celery_app(Settings(broker_url="redis://127.0.0.1:1/0"))
    name, kwargs = "automations.steps.send_email", {"run_id": str(run), "step_key": "mail"}
    celery = app.amqp.as_task_v2("the-id", name, kwargs=kwargs)
    entry = json.loads(
        step_messages.encode(
            name, kwargs, queue="automations", origin="o", headers=step_headers(send)
        )
    )
    # send_task(headers=...) merges them into the message's own (send_task_message).
    assert set(entry["headers"]) == {*celery.headers, VERSION_HEADER}
    assert entry["headers"][VERSION_HEADER] == str(version)


def test_a_backlog_of_ticks_sweeps_once_per_half_interval() -> None:
    now = [100.0]
    gate = TickGate(5, monotonic=lambda: now[0])
    assert [gate.opens() for _ in range(50)] == [True] + [False] * 49
    now[0] += 2.4
    assert not gate.opens()
    now[0] += 0.2
    assert gate.opens()
    assert (
        "expires"
        not in celery_config(Settings())["beat_schedule"]["automations-sweeper"]["options"]
    ), "an absolute expiry from beat's clock drops every tick on a worker whose clock is ahead"
