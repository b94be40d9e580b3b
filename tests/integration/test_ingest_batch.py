"""Set-based ingestion of a batch: the same outcome as the events one by one, in order."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from engine.db import transaction
from engine.errors import NotFound
from engine.executor import execute_step
from engine.ingest import EventRequest, RejectedEvent, ingest_events
from engine.store import content as content_store
from models.enums import StepStatus
from models.tables import Contact, Event, Run, RunStep
from tests.integration.factories import chain, make_automation, make_contact, unique_email
from tests.integration.harness import Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)


def ingest(stack: Stack, requests: list[EventRequest]) -> list:  # type: ignore[type-arg]
    rt = stack.runtime
    with transaction(rt.sessions) as session:
        return ingest_events(session, rt, requests, now=rt.clock.now())


def count(stack: Stack, table: type) -> int:
    with transaction(stack.runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_one_contact_per_address_and_one_run_per_event(rt_stack: Stack) -> None:
    make_automation(
        rt_stack,
        [
            {"key": "start", "type": "trigger", "config": {"event_name": "signed.up"}},
            {"key": "tag", "type": "contact_update", "config": {"first_name": "B"}},
        ],
        chain("start", "tag"),
    )
    known = unique_email("known")
    known_id = make_contact(rt_stack, known)
    new = unique_email("new")
    results = ingest(
        rt_stack,
        [
            EventRequest("signed.up", email=new.upper()),
            EventRequest("signed.up", email=new),
            EventRequest("signed.up", contact_id=str(known_id)),
            EventRequest("other.event", email=known),
        ],
    )
    assert [len(r.run_ids) for r in results] == [1, 1, 1, 0]
    assert results[0].contact_id == results[1].contact_id != known_id
    assert results[2].contact_id == results[3].contact_id == known_id
    assert all(len(r.dispatches) == len(r.run_ids) for r in results)
    assert count(rt_stack, Contact) == 2
    assert count(rt_stack, Event) == 4
    assert count(rt_stack, Run) == 3


def test_a_bad_event_names_its_index_and_nothing_is_written(rt_stack: Stack) -> None:
    with pytest.raises(RejectedEvent) as rejected:
        ingest(
            rt_stack,
            [
                EventRequest("a", email=unique_email()),
                EventRequest("a", email=unique_email()),
                EventRequest("a", contact_id=str(uuid.uuid4())),
            ],
        )
    assert rejected.value.index == 2
    assert isinstance(rejected.value.error, NotFound)
    assert count(rt_stack, Contact) == count(rt_stack, Event) == 0


def test_idempotency_keys_within_and_across_batches(rt_stack: Stack) -> None:
    email = unique_email()
    first = ingest(rt_stack, [EventRequest("a", email=email, idempotency_key="k1")])
    again = ingest(
        rt_stack,
        [
            EventRequest("a", email=email, idempotency_key="k1"),
            EventRequest("a", email=email, idempotency_key="k2"),
        ],
    )
    assert again[0].duplicate and again[0].event_id == first[0].event_id
    assert not again[1].duplicate
    assert count(rt_stack, Event) == 2


def test_the_first_matching_event_of_a_batch_resumes_a_wait_once(rt_stack: Stack) -> None:
    make_automation(
        rt_stack,
        [
            {"key": "start", "type": "trigger", "config": {"event_name": "cart.created"}},
            {
                "key": "wait",
                "type": "wait_for_event",
                "config": {"event_name": "cart.paid", "timeout": "1 day"},
            },
        ],
        chain("start", "wait"),
    )
    email = unique_email()
    (started,) = ingest(rt_stack, [EventRequest("cart.created", email=email)])
    (run_id,) = started.run_ids
    execute_step(rt_stack.runtime, run_id, "wait")  # registers the wait
    paid = ingest(
        rt_stack,
        [
            EventRequest("cart.paid", email=email, payload={"n": 1}),
            EventRequest("cart.paid", email=email, payload={"n": 2}),
        ],
    )
    assert paid[0].resumed == [(run_id, "wait")]
    assert paid[1].resumed == []
    with transaction(rt_stack.runtime.sessions) as session:
        step = session.get(RunStep, (run_id, "wait"))
        assert step is not None
        assert step.status == StepStatus.COMPLETED
        assert step.output is not None and step.output["payload"] == {"n": 1}
        assert step.output["event_id"] == str(paid[0].event_id)


def test_a_duplicate_of_a_batch_starts_no_run(rt_stack: Stack) -> None:
    """The runs and steps of a keyed event go in with it, or not at all (one statement on
    PostgreSQL): the duplicate, within the batch or of a stored event, starts nothing."""
    make_automation(
        rt_stack,
        [
            {"key": "start", "type": "trigger", "config": {"event_name": "signed.up"}},
            {"key": "later", "type": "delay", "config": {"duration": "1 day"}},
        ],
        chain("start", "later"),
    )
    email = unique_email()
    (first,) = ingest(rt_stack, [EventRequest("signed.up", email=email, idempotency_key="k1")])
    results = ingest(
        rt_stack,
        [
            EventRequest("signed.up", email=email, idempotency_key="k1"),
            EventRequest("signed.up", email=email, idempotency_key="k2"),
            EventRequest("signed.up", email=email, idempotency_key="k2"),
            EventRequest("signed.up", email=email),
        ],
    )
    assert [r.duplicate for r in results] == [True, False, True, False]
    assert results[0].event_id == first.event_id and results[2].event_id is None
    assert [len(r.run_ids) for r in results] == [0, 1, 0, 1]
    assert [len(r.dispatches) for r in results] == [0, 1, 0, 1]
    assert count(rt_stack, Event) == count(rt_stack, Run) == 3
    assert count(rt_stack, RunStep) == 6


def test_an_event_refused_after_its_contact_was_written_leaves_nothing(rt_stack: Stack) -> None:
    """Without keys, the contacts are written with the routes' lookup, before the payloads
    are checked against their schemas: a refusal rolls them back, and names its own index."""
    with transaction(rt_stack.runtime.sessions) as session:
        content_store.create_event_definition(
            session, name="order.paid", schema={"amount": "number"}, now=rt_stack.clock.now()
        )
    known_id = make_contact(rt_stack, unique_email("known"))
    with pytest.raises(RejectedEvent) as rejected:
        ingest(
            rt_stack,
            [
                EventRequest("order.paid", email=unique_email(), payload={"amount": 1}),
                EventRequest("order.paid", contact_id=str(known_id), payload={"amount": "x"}),
                EventRequest("order.paid", contact_id=str(uuid.uuid4())),
            ],
        )
    assert rejected.value.index == 1
    assert count(rt_stack, Contact) == 1
    assert count(rt_stack, Event) == 0


def test_a_payload_orjson_refuses_is_stored_as_given(rt_stack: Stack) -> None:
    # Integers beyond 64 bits are valid JSON that orjson will not write: engine/json_text.py
    # falls back to the json module, and the event's payload and the run start as any other.
    make_automation(
        rt_stack,
        [
            {"key": "start", "type": "trigger", "config": {"event_name": "big.number"}},
            {"key": "tag", "type": "contact_update", "config": {"first_name": "B"}},
        ],
        chain("start", "tag"),
    )
    payload = {"order": 2**70, "name": "café ☕", "nested": [{"n": -(2**65)}]}
    results = ingest(rt_stack, [EventRequest("big.number", email=unique_email(), payload=payload)])
    assert len(results[0].run_ids) == 1
    with transaction(rt_stack.runtime.sessions) as session:
        assert session.scalar(select(Event.payload)) == payload
