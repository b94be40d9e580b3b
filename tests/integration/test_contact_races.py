"""Contacts and segments changed by two parties at once, the interleaving forced (PostgreSQL).

One side holds its transaction open at the exact point where the other must act; the other is
a real request to the live API or a step executed as a worker executes it. SQLite runs one write
transaction at a time, so none of these interleavings can happen there.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from engine import contacts
from engine.clock import FrozenClock
from engine.db import transaction
from engine.executor import execute_step
from engine.runtime import Runtime, create_runtime
from tests.integration.factories import chain, make_automation
from tests.integration.harness import ApiServer, Stack
from tests.integration.test_races import Gate, blocked_on_lock, ingest, wait_automation
from tests.patience import patience

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

T0 = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def wait_until_blocked(stack: Stack) -> None:
    """Until a session of the test database waits for a row lock."""
    deadline = time.monotonic() + patience(10)
    while not blocked_on_lock(stack):
        assert time.monotonic() < deadline, "the other side never waited for the lock"
        time.sleep(0.02)


def request(server: ApiServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    with server.client() as client:
        return client.request(method, path, **kwargs)


def while_held(
    stack: Stack,
    pool: ThreadPoolExecutor,
    hold: Callable[[Any], None],
    other: Callable[[], Any],
) -> Any:
    """`hold` in a transaction kept open until `other` (on a thread) waits for its locks."""
    with transaction(stack.runtime.sessions) as session:
        hold(session)
        started: Future[Any] = pool.submit(other)
        wait_until_blocked(stack)
    return started.result(timeout=20)


def segment(api: httpx.Client) -> str:
    return str(api.post("/segments", json={"name": "Trial"}).json()["id"])


def contact(api: httpx.Client, email: str) -> str:
    answer = api.post("/contacts", json={"email": email})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def assert_not_found(answer: httpx.Response, message: str) -> None:
    assert answer.status_code == 404, answer.text
    assert answer.json() == {"statusCode": 404, "name": "not_found", "message": message}


def test_adding_a_member_while_its_segment_is_deleted_is_a_404(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    segment_id = segment(api)
    contact(api, "ada@example.com")

    answer = while_held(
        rt_stack,
        pool,
        lambda session: contacts.delete_segment(session, uuid.UUID(segment_id), now=T0),
        lambda: request(api_server, "POST", f"/contacts/ada@example.com/segments/{segment_id}"),
    )

    assert_not_found(answer, "Segment not found")
    assert api.get("/contacts/ada@example.com/segments").json()["data"] == []


def test_a_contact_created_into_a_segment_being_deleted_is_refused_whole(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    segment_id = segment(api)
    body = {"email": "ada@example.com", "segments": [segment_id]}

    answer = while_held(
        rt_stack,
        pool,
        lambda session: contacts.delete_segment(session, uuid.UUID(segment_id), now=T0),
        lambda: request(api_server, "POST", "/contacts", json=body),
    )

    assert answer.status_code == 422, answer.text
    assert answer.json()["message"] == f"`segments[0].id`: no segment has the id '{segment_id}'"
    assert_not_found(api.get("/contacts/ada@example.com"), "Contact not found")


def test_adding_a_member_while_the_contact_is_deleted_is_a_404(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    segment_id = segment(api)
    contact(api, "ada@example.com")
    now = rt_stack.clock.now()

    answer = while_held(
        rt_stack,
        pool,
        lambda session: contacts.delete_contact(session, "ada@example.com", now=now),
        lambda: request(api_server, "POST", f"/contacts/ada@example.com/segments/{segment_id}"),
    )

    assert_not_found(answer, "Contact not found")
    assert api.get(f"/segments/{segment_id}/contacts").json()["data"] == []


def test_renaming_a_segment_while_it_is_deleted_is_a_404(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    segment_id = segment(api)

    answer = while_held(
        rt_stack,
        pool,
        lambda session: contacts.delete_segment(session, uuid.UUID(segment_id), now=T0),
        lambda: request(api_server, "PATCH", f"/segments/{segment_id}", json={"name": "Paid"}),
    )

    assert_not_found(answer, "Segment not found")


def test_an_event_for_an_email_whose_contact_is_being_deleted_makes_a_new_contact(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    """An unknown email creates the contact: so does one whose contact goes while the event
    comes in (the deletion holds the row when the event finds it, and commits after)."""
    old_id = contact(api, "ada@example.com")

    def delete_held(session: Any) -> None:
        contacts.find_contact(session, old_id, for_update=True)

    with transaction(rt_stack.runtime.sessions) as session:
        delete_held(session)
        sent: Future[httpx.Response] = pool.submit(
            request,
            api_server,
            "POST",
            "/events/send",
            json={"event": "user.created", "email": "ada@example.com"},
        )
        wait_until_blocked(rt_stack)
        session.execute(text("DELETE FROM contacts WHERE id = :id"), {"id": old_id})
    answer = sent.result(timeout=20)

    assert answer.status_code == 202, answer.text
    found = api.get("/contacts/ada@example.com")
    assert found.status_code == 200
    assert found.json()["id"] != old_id


def runtime(stack: Stack, checkpoint: Callable[[str], None] | None = None) -> Runtime:
    """A worker's runtime: one step per execution, so that a gate parks the step it names."""
    return create_runtime(
        stack.settings.model_copy(update={"inline_steps": 0}),
        clock=FrozenClock(T0),
        checkpoint=checkpoint or (lambda _: None),
    )


def started_run(stack: Stack, step: dict[str, Any], email: str) -> uuid.UUID:
    """A run of trigger -> `step` -> a delay, its trigger executed: `step` is next."""
    pause = {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}}
    make_automation(
        stack,
        [{"key": "start", "type": "trigger", "config": {"event_name": "go"}}, step, pause],
        chain("start", step["key"], "pause"),
    )
    (run_id,) = ingest(runtime(stack), "go", email).run_ids
    execute_step(runtime(stack), run_id, "start")
    return run_id


def step_parked_at_its_handler(
    stack: Stack, pool: ThreadPoolExecutor, run_id: uuid.UUID, step: dict[str, Any]
) -> tuple[Gate, Future[Any]]:
    gate = Gate(f"{step['type']}.handler")
    executing = pool.submit(execute_step, runtime(stack, gate), run_id, step["key"])
    assert gate.reached.wait(10)
    return gate, executing


@pytest.mark.parametrize(
    "step",
    [
        {"key": "act", "type": "contact_update", "config": {"first_name": "Ada"}},
        {"key": "act", "type": "add_to_segment", "config": {"segment_id": "<segment>"}},
    ],
    ids=["contact_update", "add_to_segment"],
)
def test_deleting_a_contact_while_a_step_of_its_run_writes_it(
    api: httpx.Client,
    api_server: ApiServer,
    rt_stack: Stack,
    pool: ThreadPoolExecutor,
    step: dict[str, Any],
) -> None:
    """The deletion waits for the step (which holds its run) instead of deadlocking with it."""
    if step["type"] == "add_to_segment":
        step = {**step, "config": {"segment_id": segment(api)}}
    run_id = started_run(rt_stack, step, "ada@example.com")
    gate, executing = step_parked_at_its_handler(rt_stack, pool, run_id, step)

    deleting = pool.submit(request, api_server, "DELETE", "/contacts/ada@example.com")
    wait_until_blocked(rt_stack)
    gate.release.set()
    executing.result(timeout=20)
    answer = deleting.result(timeout=20)

    assert answer.status_code == 200, answer.text
    assert rt_stack.steps(run_id)["act"].status == "completed"
    assert_not_found(api.get("/contacts/ada@example.com"), "Contact not found")
    # The rest of the run is skipped, as after any deletion of its contact.
    execute_step(runtime(rt_stack), run_id, "pause")
    assert rt_stack.steps(run_id)["pause"].status == "skipped"
    assert rt_stack.run(run_id).status == "completed"


def test_a_contact_delete_step_while_another_run_writes_the_contact(
    rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    """Two runs of one contact: one deletes it while the other's step is updating it."""
    update = {"key": "act", "type": "contact_update", "config": {"first_name": "Ada"}}
    updating = started_run(rt_stack, update, "ada@example.com")
    make_automation(
        rt_stack,
        [
            {"key": "start", "type": "trigger", "config": {"event_name": "bye"}},
            {"key": "erase", "type": "contact_delete"},
        ],
        chain("start", "erase"),
    )
    (deleting,) = ingest(runtime(rt_stack), "bye", "ada@example.com").run_ids
    execute_step(runtime(rt_stack), deleting, "start")
    gate, executing = step_parked_at_its_handler(rt_stack, pool, updating, update)

    erasing = pool.submit(execute_step, runtime(rt_stack), deleting, "erase")
    wait_until_blocked(rt_stack)
    gate.release.set()
    executing.result(timeout=20)
    erasing.result(timeout=20)

    assert rt_stack.steps(updating)["act"].status == "completed"
    assert rt_stack.steps(deleting)["erase"].status == "completed"
    assert rt_stack.run(deleting).status == "completed"


def test_a_contact_delete_step_run_by_a_message_for_another_type_locks_its_contact_first(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    """A step's message names its type (its task), which tells the claim whether to lock the
    contact first. A message naming another type (misrouted, or sent by hand) must not have a
    contact_delete step hold its step and run, then wait for its contact: a deletion of that
    contact holds the contact and waits for the run."""
    step = {"key": "act", "type": "contact_delete"}
    run_id = started_run(rt_stack, step, "ada@example.com")
    gate = Gate("contact_delete.handler")
    misrouted = pool.submit(execute_step, runtime(rt_stack, gate), run_id, "act", "send_email")
    assert gate.reached.wait(10)

    deleting = pool.submit(request, api_server, "DELETE", "/contacts/ada@example.com")
    wait_until_blocked(rt_stack)
    gate.release.set()
    misrouted.result(timeout=20)
    answer = deleting.result(timeout=20)

    act = rt_stack.steps(run_id)["act"]
    assert (act.status, act.error) == ("completed", None)
    assert_not_found(answer, "Contact not found")  # the step deleted it first


def test_an_add_to_segment_step_whose_segment_is_being_deleted_fails_clearly(
    api: httpx.Client, rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    segment_id = segment(api)
    step = {"key": "act", "type": "add_to_segment", "config": {"segment_id": segment_id}}
    run_id = started_run(rt_stack, step, "ada@example.com")

    while_held(
        rt_stack,
        pool,
        lambda session: contacts.delete_segment(session, uuid.UUID(segment_id), now=T0),
        lambda: execute_step(runtime(rt_stack), run_id, "act"),
    )

    act = rt_stack.steps(run_id)["act"]
    assert act.status == "failed"
    message = f"Segment `{segment_id}` not found"
    assert act.error == {"message": message, "code": "segment_not_found"}
    assert rt_stack.run(run_id).status == "failed"


def test_deleting_a_contact_while_an_event_resumes_its_wait(
    api: httpx.Client, rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    """The event holds the contact and goes on to the waiting step and its run; the deletion,
    which locks the contact first too, waits for the event while holding nothing the event
    needs, however long it waits: both succeed."""
    wait_automation(rt_stack)
    (run_id,) = ingest(runtime(rt_stack), "user.created", "ada@example.com").run_ids
    execute_step(runtime(rt_stack), run_id, "start")
    execute_step(runtime(rt_stack), run_id, "await_paid")
    assert rt_stack.steps(run_id)["await_paid"].status == "waiting"
    gate = Gate("ingest.contact_locked")
    sending = pool.submit(ingest, runtime(rt_stack, gate), "order.paid", "ada@example.com")
    assert gate.reached.wait(10)

    def delete() -> uuid.UUID:
        with transaction(rt_stack.runtime.sessions) as session:
            return contacts.delete_contact(session, "ada@example.com", now=T0)

    deleting = pool.submit(delete)
    # Released only once the deletion waits for a lock: one that waits holding the step or
    # the run would deadlock with the event now.
    wait_until_blocked(rt_stack)
    gate.release.set()
    resumed = sending.result(timeout=20).resumed
    deleting.result(timeout=20)

    assert resumed == [(run_id, "await_paid")]
    assert_not_found(api.get("/contacts/ada@example.com"), "Contact not found")


# A step that writes its contact takes the contact's lock in the statement that claims it (one
# round trip), whose snapshot predates its wait for that lock: what the other side committed
# meanwhile must still be what the step reads.
CONTACT_FROM_ITSELF = {
    "key": "act",
    "type": "contact_update",
    "config": {"last_name": {"var": "contact.first_name"}},
}


def test_a_step_that_writes_its_contact_reads_what_an_update_committed_while_it_waited(
    rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    run_id = started_run(rt_stack, CONTACT_FROM_ITSELF, "ada@example.com")

    while_held(
        rt_stack,
        pool,
        lambda session: contacts.update_contact(
            session,
            "ada@example.com",
            {"first_name": "Grace"},
            now=T0,
            limits=rt_stack.runtime.json_limits,
        ),
        lambda: execute_step(runtime(rt_stack), run_id, "act", "contact_update"),
    )

    act = rt_stack.steps(run_id)["act"]
    assert act.status == "completed", act.error
    assert act.output is not None and act.output["updated"] == {"last_name": "Grace"}


def test_a_step_that_writes_its_contact_waits_for_its_deletion_and_finds_it_gone(
    rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    run_id = started_run(rt_stack, CONTACT_FROM_ITSELF, "ada@example.com")

    while_held(
        rt_stack,
        pool,
        lambda session: contacts.delete_contact(session, "ada@example.com", now=T0),
        lambda: execute_step(runtime(rt_stack), run_id, "act", "contact_update"),
    )

    act = rt_stack.steps(run_id)["act"]
    assert act.status == "skipped" and act.error is None
    execute_step(runtime(rt_stack), run_id, "pause")
    assert rt_stack.run(run_id).status == "completed"
