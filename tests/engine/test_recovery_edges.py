"""Recovery at the edges of an automation's life: retries and replays that meet a deletion,
bulk replays that overlap, a run cancelled while it sent, in one process on the engine tier."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine import content, lifecycle
from engine.bulk import (
    AUTOMATION_DELETED,
    BULK_CANCELLED,
    cancel_bulk,
    get_bulk,
    parse_request,
    start_bulk,
    work_chunk,
)
from engine.db import transaction
from engine.errors import Conflict, NotFound, StepFailure
from engine.lifecycle import RUNS_CANCELLED, cancel_run
from engine.mail import OutgoingEmail
from engine.mail.recording import RecordingTransport
from engine.recovery import replay_run, retry_run
from engine.runtime import Runtime
from models.enums import BulkAction
from models.tables import BulkItem, BulkOperation, Run
from tests.engine.driver import Driver
from tests.engine.test_runs_in_process import TRIGGER, chain, email_step


def failed_runs(driver: Driver, count: int) -> tuple[uuid.UUID, str, list[uuid.UUID]]:
    """An automation whose email step fails until its template is published, and its runs."""
    template = driver.template(published=False)
    automation_id = driver.automation(
        [TRIGGER, email_step("hello", template)], chain("start", "hello")
    )
    runs = [driver.send("user.created", f"e{n}@example.test").run_ids[0] for n in range(count)]
    driver.settle()
    assert {driver.run(run_id).status for run_id in runs} == {"failed"}
    return automation_id, template, runs


def publish(driver: Driver, template: str) -> None:
    with transaction(driver.rt.sessions) as session:
        content.publish_template(session, template, now=driver.clock.now())


def delete(driver: Driver, automation_id: uuid.UUID) -> None:
    lifecycle.delete(driver.rt, driver, automation_id)


def start(
    driver: Driver, automation_id: uuid.UUID, action: BulkAction, body: dict[str, Any]
) -> uuid.UUID:
    request = parse_request(automation_id, action, body)
    with transaction(driver.rt.sessions) as session:
        started = start_bulk(session, request, now=driver.clock.now())
        bulk_id = started.bulk.id
    driver.enqueue(started.dispatches)
    return bulk_id


def bulk(driver: Driver, bulk_id: uuid.UUID) -> tuple[BulkOperation, list[BulkItem]]:
    with transaction(driver.rt.sessions) as session:
        found = session.get(BulkOperation, bulk_id)
        assert found is not None
        items = list(session.query(BulkItem).filter(BulkItem.bulk_id == bulk_id))
        return found, items


def replays(driver: Driver, run_id: uuid.UUID) -> int:
    with transaction(driver.rt.sessions) as session:
        return session.query(Run).filter(Run.replay_of == run_id).count()


def test_a_bulk_retry_does_not_revive_runs_of_an_automation_deleted_meanwhile(
    driver: Driver,
) -> None:
    automation_id, template, runs = failed_runs(driver, 3)
    publish(driver, template)
    bulk_id = start(driver, automation_id, BulkAction.RETRY, {})
    delete(driver, automation_id)  # before a worker takes the operation's first chunk
    driver.settle()

    assert {driver.run(run_id).status for run_id in runs} == {"failed"}
    assert driver.sent == []
    operation, items = bulk(driver, bulk_id)
    assert (operation.status, operation.done, operation.skipped) == ("completed", 0, 3)
    assert {item.error for item in items} == {AUTOMATION_DELETED}
    # The operator who started it can still read how it ended (GET .../runs/retries/{id}).
    with transaction(driver.rt.sessions) as session:
        shown, sample = get_bulk(session, automation_id, bulk_id)
        assert (shown.status, shown.matched, shown.skipped) == ("completed", 3, 3)
        assert {item.error for item in sample} == {AUTOMATION_DELETED}
        with pytest.raises(NotFound, match="Bulk operation not found"):
            get_bulk(session, automation_id, uuid.uuid4())
        with pytest.raises(NotFound, match="Automation not found"):
            get_bulk(session, uuid.uuid4(), bulk_id)


def cancel(driver: Driver, automation_id: uuid.UUID, bulk_id: uuid.UUID) -> BulkOperation:
    with transaction(driver.rt.sessions) as session:
        return cancel_bulk(session, automation_id, bulk_id, now=driver.clock.now())


def test_a_bulk_retry_cancelled_after_a_chunk_leaves_the_runs_it_had_not_reached(
    driver: Driver,
) -> None:
    automation_id, template, runs = failed_runs(driver, 5)
    publish(driver, template)
    bulk_id = start(driver, automation_id, BulkAction.RETRY, {})
    driver.queue.clear()  # its first chunk's message, taken by hand with a chunk of 2
    driver.enqueue(work_chunk(driver.rt, bulk_id, size=2))
    assert cancel(driver, automation_id, bulk_id).status == "cancelled"
    driver.settle()  # the retried runs go on; the next chunk's message finds it cancelled

    operation, items = bulk(driver, bulk_id)
    assert (operation.status, operation.done, operation.skipped) == ("cancelled", 2, 3)
    assert sorted(item.error or "" for item in items) == ["", "", *[BULK_CANCELLED] * 3]
    statuses = sorted(driver.run(run_id).status for run_id in runs)
    assert statuses == ["completed", "completed", "failed", "failed", "failed"]
    assert len(driver.sent) == 2
    # Cancelled already: answered as it is. Completed: it cannot be.
    assert cancel(driver, automation_id, bulk_id).completed_at == operation.completed_at
    over = start(driver, automation_id, BulkAction.RETRY, {})
    driver.settle()
    with pytest.raises(Conflict, match="already completed and cannot be cancelled"):
        cancel(driver, automation_id, over)
    with pytest.raises(NotFound, match="Bulk operation not found"):
        cancel(driver, automation_id, uuid.uuid4())


def stop_cancelling(driver: Driver, automation_id: uuid.UUID) -> None:
    lifecycle.stop(driver.rt, driver, automation_id, cancel_runs=True)


def test_a_bulk_retry_ends_when_its_automation_is_stopped_with_its_runs_cancelled(
    driver: Driver,
) -> None:
    automation_id, template, runs = failed_runs(driver, 3)
    publish(driver, template)
    bulk_id = start(driver, automation_id, BulkAction.RETRY, {})
    # Before a worker takes the operation's first chunk: all the work in flight ends, the
    # operation's too, rather than reviving runs once the cancel is over.
    stop_cancelling(driver, automation_id)
    driver.settle()

    assert {driver.run(run_id).status for run_id in runs} == {"failed"}
    assert driver.sent == []
    operation, items = bulk(driver, bulk_id)
    assert (operation.status, operation.done, operation.skipped) == ("completed", 0, 3)
    assert {item.error for item in items} == {RUNS_CANCELLED}


def test_no_bulk_operation_starts_while_an_automation_s_runs_are_cancelled(
    driver: Driver,
) -> None:
    automation_id, template, _ = failed_runs(driver, 2)
    publish(driver, template)
    with transaction(driver.rt.sessions) as session:  # the mark, no slice yet
        lifecycle.stop_automation(session, automation_id, cancel_runs=True, now=driver.clock.now())
    for action in (BulkAction.RETRY, BulkAction.REPLAY):
        with pytest.raises(Conflict, match="being cancelled") as refused:
            start(driver, automation_id, action, {})
        assert refused.value.code == lifecycle.RUNS_BEING_CANCELLED
    with transaction(driver.rt.sessions) as session:
        assert session.query(BulkOperation).count() == 0

    lifecycle.cancel_marked_runs(driver.rt, automation_id)  # over: a retry may start again
    bulk_id = start(driver, automation_id, BulkAction.RETRY, {})
    driver.settle()
    assert bulk(driver, bulk_id)[0].done == 2


def test_a_retry_that_meets_a_deletion_between_its_read_and_its_write_is_not_found(
    driver: Driver,
) -> None:
    automation_id, template, (run_id,) = failed_runs(driver, 1)
    publish(driver, template)

    def delete_after_reading(name: str) -> None:
        if name == "retry.read":
            delete(driver, automation_id)

    driver.rt.checkpoint = delete_after_reading
    with pytest.raises(NotFound, match="Automation not found"):
        retry_run(driver.rt, automation_id, run_id)
    driver.settle()
    assert driver.run(run_id).status == "failed"
    assert driver.sent == []


def test_overlapping_bulk_replays_replay_each_run_once(driver: Driver) -> None:
    automation_id, template, runs = failed_runs(driver, 3)
    publish(driver, template)
    # Two filters that match the same runs: two operations, both frozen before either works.
    first = start(driver, automation_id, BulkAction.REPLAY, {})
    narrower = {"error_code": "template_not_published"}
    second = start(driver, automation_id, BulkAction.REPLAY, narrower)
    driver.settle()

    assert [replays(driver, run_id) for run_id in runs] == [1, 1, 1]
    assert len(driver.sent) == 3
    assert bulk(driver, first)[0].done == 3
    operation, items = bulk(driver, second)
    assert (operation.done, operation.skipped) == (0, 3)
    assert all("already replayed" in (item.error or "") for item in items)


def test_a_bulk_replay_skips_a_run_replayed_by_hand_meanwhile(driver: Driver) -> None:
    automation_id, template, runs = failed_runs(driver, 2)
    publish(driver, template)
    bulk_id = start(driver, automation_id, BulkAction.REPLAY, {})
    with transaction(driver.rt.sessions) as session:
        replayed = replay_run(session, driver.rt, automation_id, runs[0], now=driver.clock.now())
    driver.enqueue(replayed.dispatches)
    driver.settle()

    assert [replays(driver, run_id) for run_id in runs] == [1, 1]
    assert len(driver.sent) == 2
    operation, _ = bulk(driver, bulk_id)
    assert (operation.done, operation.skipped) == (1, 1)


class RefusingFirst(RecordingTransport):
    """Refuses the first email for good (an SMTP 5xx), then accepts as RecordingTransport."""

    def send(self, email: OutgoingEmail) -> str:
        if not self.refused:
            self.refused = True
            raise StepFailure("550 mailbox unavailable", code="smtp_rejected")
        return super().send(email)

    refused = False


def test_a_run_cancelled_while_a_send_failed_resumes_from_that_send(driver: Driver) -> None:
    rt = driver.rt
    driver = Driver(
        Runtime(rt.settings, sessions=rt.sessions, clock=rt.clock, transport=RefusingFirst())
    )
    template = driver.template()
    steps = [TRIGGER, email_step("hello", template), email_step("again", template)]
    automation_id = driver.automation(steps, chain("start", "hello", "again"))
    (run_id,) = driver.send("user.created", "f@example.test").run_ids

    def cancel_while_sending(name: str) -> None:
        if name == "send_email.before_send":
            with transaction(driver.rt.sessions) as session:
                cancel_run(session, automation_id, run_id, now=driver.clock.now())

    driver.rt.checkpoint = cancel_while_sending
    driver.settle()
    driver.rt.checkpoint = lambda name: None
    assert driver.run(run_id).status == "cancelled"
    assert driver.steps(run_id)["hello"].status == "failed"  # the send in flight finished

    driver.enqueue(retry_run(driver.rt, automation_id, run_id, from_cancelled=True).dispatches)
    driver.settle()
    assert driver.run(run_id).status == "completed"
    assert [email.to for email in driver.sent] == [("f@example.test",)] * 2


def test_a_bulk_replay_skips_a_run_retried_by_hand_meanwhile(driver: Driver) -> None:
    automation_id, template, runs = failed_runs(driver, 2)
    publish(driver, template)
    request = parse_request(automation_id, BulkAction.REPLAY, {})
    with transaction(driver.rt.sessions) as session:
        started = start_bulk(session, request, now=driver.clock.now())
    # Retried and completed before a worker takes the operation's chunk: its email went out.
    driver.enqueue(retry_run(driver.rt, automation_id, runs[0]).dispatches)
    driver.settle()
    driver.enqueue(started.dispatches)
    driver.settle()

    assert [replays(driver, run_id) for run_id in runs] == [0, 1]
    assert sorted(email.to for email in driver.sent) == [("e0@example.test",), ("e1@example.test",)]
    operation, items = bulk(driver, started.bulk.id)
    assert (operation.done, operation.skipped) == (1, 1)
    (skipped,) = [item for item in items if item.run_id == runs[0]]
    assert "retried since" in (skipped.error or "")


def test_a_bulk_retry_skips_a_run_retried_by_hand_meanwhile(driver: Driver) -> None:
    automation_id, _, runs = failed_runs(driver, 2)
    request = parse_request(automation_id, BulkAction.RETRY, {})
    with transaction(driver.rt.sessions) as session:
        started = start_bulk(session, request, now=driver.clock.now())
    # Retried by hand, it fails again (the template is still a draft) before the bulk's turn.
    driver.enqueue(retry_run(driver.rt, automation_id, runs[0]).dispatches)
    driver.settle()
    assert driver.run(runs[0]).status == "failed"
    driver.enqueue(started.dispatches)
    driver.settle()

    assert [driver.run(run_id).retries for run_id in runs] == [1, 1]
    operation, _ = bulk(driver, started.bulk.id)
    assert (operation.done, operation.skipped) == (1, 1)


def test_a_bulk_retry_leaves_out_runs_replayed_before_or_meanwhile(driver: Driver) -> None:
    """A replay carries a run on: retrying it too would send its emails a second time."""
    automation_id, template, runs = failed_runs(driver, 3)
    with transaction(driver.rt.sessions) as session:
        early = replay_run(session, driver.rt, automation_id, runs[0], now=driver.clock.now())
    driver.enqueue(early.dispatches)
    driver.settle()  # the replay fails too: the template is still a draft
    request = parse_request(automation_id, BulkAction.RETRY, {})
    with transaction(driver.rt.sessions) as session:
        started = start_bulk(session, request, now=driver.clock.now())
        late = replay_run(session, driver.rt, automation_id, runs[1], now=driver.clock.now())
    publish(driver, template)
    driver.enqueue(late.dispatches)
    driver.enqueue(started.dispatches)
    driver.settle()

    # Matched: the two failed runs not replayed then, and the first replay (itself not
    # replayed); runs[0] was left out.
    operation, items = bulk(driver, started.bulk.id)
    assert (operation.matched, operation.done, operation.skipped) == (3, 2, 1)
    (skipped,) = [item for item in items if item.status == "skipped"]
    assert skipped.run_id == runs[1] and f"replayed (by run {late.run_id})" in (skipped.error or "")
    assert [driver.run(run_id).retries for run_id in runs] == [0, 0, 1]
    sent = sorted(to for email in driver.sent for to in email.to)
    assert sent == ["e0@example.test", "e1@example.test", "e2@example.test"]


def test_a_bulk_request_written_differently_finds_the_running_one(driver: Driver) -> None:
    """The same filter in other words (a null field, statuses in another order, the same
    instant in another offset) is the same operation while it runs, not a second that skips
    every run."""
    automation_id, _, _ = failed_runs(driver, 2)
    first = start(
        driver,
        automation_id,
        BulkAction.REPLAY,
        {"status": ["failed", "completed"], "created_after": "2020-01-01T00:00:00Z"},
    )
    same = [
        {"status": "completed,failed", "created_after": "2020-01-01T01:00:00+01:00"},
        {
            "status": ["failed", "completed"],
            "created_after": "2020-01-01T00:00:00",
            "step_key": None,
        },
    ]
    assert [start(driver, automation_id, BulkAction.REPLAY, body) for body in same] == [first] * 2
    other = {"status": ["failed"], "created_after": "2020-01-01T00:00:00Z"}
    assert start(driver, automation_id, BulkAction.REPLAY, other) != first
