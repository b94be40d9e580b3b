"""Stopping or deleting an automation with many runs in flight.

A drip campaign parks a run per contact in a long delay: an automation can have hundreds of
thousands in flight. Stopping it with `cancel_runs`, or deleting it, marks the automation in
one transaction, then cancels its runs a slice per transaction. In one transaction, the cancel
held every run's contact locked until the last was cancelled (about a minute for a million
runs); listed one parameter per run, it failed past 65,535 runs (PostgreSQL's limit).
Meanwhile the runs not reached yet take no step (their steps see them cancelled), nothing can
start or resume a run of the automation. The workers cancel what the request had no time for,
a message at a time, and the sweeper sends that message again for a cancel whose process or
message was lost.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from bench import waiting
from bench.waiting import park
from engine import lifecycle, sweeper
from engine.db import transaction
from engine.dispatch import CancelWork, KeptDispatcher
from engine.executor import execute_step
from engine.lifecycle import stop_automation
from engine.rollup_check import check_rollup
from engine.store import cancels
from engine.store.rollup_rebuild import rebuild
from models.tables import Automation, Run, RunStep
from tests.integration.harness import ApiServer, Stack
from tests.integration.markers import POSTGRES_ONLY
from tests.integration.test_dashboard_hostile_input import csrf_token, signed_in
from tests.integration.test_rollup import assert_rollup_is_a_recount

# Past PostgreSQL's parameter limit (65,535), and many slices of the cancel.
IN_FLIGHT = 70_000


def parked(stack: Stack, runs: int) -> tuple[uuid.UUID, uuid.UUID]:
    """An enabled automation with `runs` runs waiting 30 days in a delay, one contact each, as
    the executor writes them (`bench.waiting.park`), and one run that is over, which a cancel
    leaves alone; the automation's id and its version's."""
    park(stack.runtime, runs + 1)
    now = stack.clock.now()
    with transaction(stack.runtime.sessions) as session:
        automation_id, version_id = session.execute(
            select(Automation.id, Automation.current_version_id)
        ).one()
        ended = session.scalar(
            select(Run.id).where(Run.automation_id == automation_id).order_by(Run.id).limit(1)
        )
        session.execute(
            update(Run).where(Run.id == ended).values(status="completed", completed_at=now)
        )
        session.execute(
            update(RunStep)
            .where(RunStep.run_id == ended, RunStep.step_key == "wait")
            .values(status="completed", completed_at=now)
        )
    assert version_id is not None
    return automation_id, version_id


def park_many(stack: Stack, runs: int) -> uuid.UUID:
    """`parked`, its many runs written by one statement."""
    automation_id, version_id = parked(stack, 0)
    waiting.park_many(stack.runtime, automation_id, version_id, runs, stack.clock.now())
    return automation_id


def recounted(stack: Stack) -> None:
    """The rollup of rows written without it, recounted (as a migration backfills it)."""
    with stack.runtime.sessions.kw["bind"].begin() as conn:
        rebuild(conn)


def statuses(stack: Stack, automation_id: uuid.UUID) -> tuple[Counter[str], Counter[str]]:
    """The automation's runs by status, and their steps by key and status."""
    with transaction(stack.runtime.sessions) as session:
        runs = session.execute(
            select(Run.status, func.count())
            .where(Run.automation_id == automation_id)
            .group_by(Run.status)
        ).all()
        steps = session.execute(
            select(RunStep.step_key, RunStep.status, func.count())
            .join(Run, Run.id == RunStep.run_id)
            .where(Run.automation_id == automation_id)
            .group_by(RunStep.step_key, RunStep.status)
        ).all()
    return (
        Counter({status: n for status, n in runs}),
        Counter({f"{key} {status}": n for key, status, n in steps}),
    )


def assert_cancelled(stack: Stack, automation_id: uuid.UUID, runs: int) -> None:
    assert statuses(stack, automation_id) == (
        Counter({"cancelled": runs, "completed": 1}),
        Counter({"start completed": runs + 1, "wait cancelled": runs, "wait completed": 1}),
    )


@POSTGRES_ONLY
def test_a_stop_cancels_more_runs_than_a_statement_takes_parameters(
    rt_stack: Stack, api: httpx.Client
) -> None:
    automation_id = park_many(rt_stack, IN_FLIGHT)
    recounted(rt_stack)
    # The request answers within REQUEST_SECONDS (10); the CLI waits up to 30 s.
    answer = api.post(f"/automations/{automation_id}/stop", json={"cancel_runs": True}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "disabled"
    # On a loaded host the request may leave slices to the worker.
    rt_stack.wait_for(
        lambda: statuses(rt_stack, automation_id)[0]["cancelled"] == IN_FLIGHT,
        timeout=60,
        what="every run cancelled",
    )
    assert_cancelled(rt_stack, automation_id, IN_FLIGHT)
    assert check_rollup(rt_stack.runtime) == []


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
@pytest.mark.parametrize("action", ["stop", "delete"])
def test_runs_are_cancelled_a_slice_per_transaction(
    rt_stack: Stack, action: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancels, "SLICE", 2)
    automation_id, _ = parked(rt_stack, 7)
    recounted(rt_stack)
    cancelled_before: list[int] = []
    real = cancels.cancel_slice

    def counted(session: Session, *args: Any, **kwargs: Any) -> cancels.Slice:
        # What other transactions see as each slice starts: the slices before it, committed.
        cancelled_before.append(statuses(rt_stack, automation_id)[0]["cancelled"])
        return real(session, *args, **kwargs)

    monkeypatch.setattr(cancels, "cancel_slice", counted)
    if action == "stop":
        lifecycle.stop(rt_stack.runtime, rt_stack.dispatcher, automation_id, cancel_runs=True)
    else:
        lifecycle.delete(rt_stack.runtime, rt_stack.dispatcher, automation_id)
    assert_cancelled(rt_stack, automation_id, 7)
    assert_rollup_is_a_recount(rt_stack)
    # 7 runs by 2: the last slice finds one, and clears the mark.
    assert cancelled_before == [0, 2, 4, 6]
    assert mark(rt_stack, automation_id) is None


def mark(stack: Stack, automation_id: uuid.UUID) -> dt.datetime | None:
    with transaction(stack.runtime.sessions) as session:
        return session.scalar(
            select(Automation.runs_cancelling_at).where(Automation.id == automation_id)
        )


def cursor(stack: Stack, automation_id: uuid.UUID) -> uuid.UUID | None:
    with transaction(stack.runtime.sessions) as session:
        return session.scalar(
            select(Automation.cancelled_through_id).where(Automation.id == automation_id)
        )


def running_runs(stack: Stack, automation_id: uuid.UUID) -> list[uuid.UUID]:
    with transaction(stack.runtime.sessions) as session:
        return list(
            session.scalars(
                select(Run.id)
                .where(Run.automation_id == automation_id, Run.status == "running")
                .order_by(Run.id)
            )
        )


def due_now(stack: Stack, run_id: uuid.UUID) -> None:
    """The run's delay ends now: its step may be claimed."""
    with transaction(stack.runtime.sessions) as session:
        session.execute(
            update(RunStep)
            .where(RunStep.run_id == run_id, RunStep.step_key == "wait")
            .values(due_at=stack.clock.now() - dt.timedelta(seconds=1))
        )


@POSTGRES_ONLY
def test_between_slices_the_runs_left_take_no_step_and_their_contacts_are_free(
    rt_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancels, "SLICE", 2)
    automation_id, _ = parked(rt_stack, 5)
    recounted(rt_stack)
    last = running_runs(rt_stack, automation_id)[-1]  # the last slice's (same time, id order)
    due_now(rt_stack, last)
    seen: list[tuple[str, str]] = []
    real = cancels.cancel_slice
    calls: list[int] = []

    def between(session: Session, *args: Any, **kwargs: Any) -> cancels.Slice:
        calls.append(1)
        if len(calls) == 2:  # the first slice is committed
            with transaction(rt_stack.runtime.sessions) as other:
                # Not held by the cancel: an event for this contact would not wait for it.
                other.execute(
                    text(
                        "SELECT 1 FROM contacts WHERE id = (SELECT contact_id FROM runs"
                        " WHERE id = :id) FOR UPDATE NOWAIT"
                    ),
                    {"id": last},
                )
            execute_step(rt_stack.runtime, last, "wait")
            seen.append((rt_stack.run(last).status, rt_stack.steps(last)["wait"].status))
        return real(session, *args, **kwargs)

    monkeypatch.setattr(cancels, "cancel_slice", between)
    lifecycle.stop(rt_stack.runtime, rt_stack.dispatcher, automation_id, cancel_runs=True)
    # Its delay was over, but its run was being cancelled: the step was, and nothing followed.
    assert seen == [("running", "cancelled")]
    assert_cancelled(rt_stack, automation_id, 5)
    assert_rollup_is_a_recount(rt_stack)


def cancelled_by_workers(stack: Stack, automation_id: uuid.UUID, runs: int) -> None:
    stack.wait_for(lambda: mark(stack, automation_id) is None, what="the workers' cancel")
    assert_cancelled(stack, automation_id, runs)
    assert cursor(stack, automation_id) is None
    assert_rollup_is_a_recount(stack)


@pytest.mark.parametrize("stack", ["postgres", "sqlite", "embedded"], indirect=True)
def test_the_sweeper_sends_a_cancel_whose_process_died_to_the_workers(rt_stack: Stack) -> None:
    automation_id, _ = parked(rt_stack, 3)
    recounted(rt_stack)
    last = running_runs(rt_stack, automation_id)[-1]
    due_now(rt_stack, last)
    # The stop committed its mark, and its process died before any slice.
    with transaction(rt_stack.runtime.sessions) as session:
        stop_automation(session, automation_id, cancel_runs=True, now=rt_stack.clock.now())
    marked = mark(rt_stack, automation_id)

    execute_step(rt_stack.runtime, last, "wait")
    assert rt_stack.steps(last)["wait"].status == "cancelled"
    rt_stack.sweep()  # the cancel may be under way still: left alone
    assert (len(running_runs(rt_stack, automation_id)), mark(rt_stack, automation_id)) == (
        3,
        marked,
    )
    rt_stack.clock.advance(dt.timedelta(seconds=rt_stack.settings.stale_after_seconds + 1))
    rt_stack.sweep()  # stamped as it is sent: the next tick would leave it alone
    cancelled_by_workers(rt_stack, automation_id, 3)


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
def test_a_stalled_cancel_is_sent_once_per_stale_delay(rt_stack: Stack) -> None:
    automation_id, _ = parked(rt_stack, 2)
    with transaction(rt_stack.runtime.sessions) as session:
        stop_automation(session, automation_id, cancel_runs=True, now=rt_stack.clock.now())
    kept, stale = KeptDispatcher(), dt.timedelta(seconds=rt_stack.settings.stale_after_seconds)
    rt_stack.clock.advance(stale + dt.timedelta(seconds=1))
    resumed = [
        sweeper.resume_cancels(rt_stack.runtime, kept, idle_before=rt_stack.clock.now() - stale)
    ]
    resumed.append(
        sweeper.resume_cancels(rt_stack.runtime, kept, idle_before=rt_stack.clock.now() - stale)
    )
    assert (resumed, kept.sent) == ([1, 0], [CancelWork(automation_id)])
    stamped = mark(rt_stack, automation_id)
    assert stamped is not None and stamped > rt_stack.clock.now() - dt.timedelta(seconds=1)
    # Lost again (the broker was wiped, say): sent again after another stale delay.
    rt_stack.clock.advance(stale + dt.timedelta(seconds=1))
    assert (
        sweeper.resume_cancels(rt_stack.runtime, kept, idle_before=rt_stack.clock.now() - stale)
        == 1
    )


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
def test_a_stop_answers_after_its_time_and_the_workers_cancel_the_rest_a_share_at_a_time(
    rt_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancels, "SLICE", 2)
    monkeypatch.setattr(lifecycle, "REQUEST_SECONDS", 0.0)  # one slice, then the answer
    monkeypatch.setattr(lifecycle, "WORK_SECONDS", 0.0)  # one slice a message
    automation_id, _ = parked(rt_stack, 7)
    recounted(rt_stack)
    oldest_first = running_runs(rt_stack, automation_id)  # one created_at: by id
    kept = KeptDispatcher()
    stopped = lifecycle.stop(rt_stack.runtime, kept, automation_id, cancel_runs=True)
    assert stopped == lifecycle.Cancelling(automation_id, cancelled=2, finished=False)
    assert kept.sent == [CancelWork(automation_id)]
    assert running_runs(rt_stack, automation_id) == oldest_first[2:]
    # Where the workers go on: after the request's slice, not from the oldest run again.
    assert cursor(rt_stack, automation_id) == oldest_first[1]
    shares = []
    while sent := lifecycle.work_cancel(rt_stack.runtime, automation_id):
        shares.append((sent, running_runs(rt_stack, automation_id)))
    # 7 runs by 2: each share sends the next behind the queue; the last finds one, and ends.
    assert shares == [
        ([CancelWork(automation_id)], oldest_first[4:]),
        ([CancelWork(automation_id)], oldest_first[6:]),
    ]
    assert (mark(rt_stack, automation_id), cursor(rt_stack, automation_id)) == (None, None)
    assert_cancelled(rt_stack, automation_id, 7)
    assert_rollup_is_a_recount(rt_stack)


class SliceClock:
    """`time.monotonic` for `lifecycle`: each slice takes the seconds listed, in turn."""

    def __init__(self, seconds: list[float]) -> None:
        self.now, self.seconds = 1_000.0, iter(seconds)

    def monotonic(self) -> float:
        return self.now

    def slice(self) -> None:
        self.now += next(self.seconds)


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_a_stop_answers_within_its_time_starting_no_slice_that_would_end_past_it(
    rt_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancels, "SLICE", 2)
    monkeypatch.setattr(lifecycle, "REQUEST_SECONDS", 10.0)
    automation_id, _ = parked(rt_stack, 9)
    # The third slice takes 4 s: a fourth, were it as slow, would end at 13 s.
    clock = SliceClock([1.0, 2.0, 4.0, 1.0])
    real = cancels.cancel_slice

    def timed(session: Session, *args: Any, **kwargs: Any) -> cancels.Slice:
        clock.slice()
        return real(session, *args, **kwargs)

    monkeypatch.setattr(cancels, "cancel_slice", timed)
    monkeypatch.setattr(lifecycle, "time", clock)
    kept = KeptDispatcher()
    stopped = lifecycle.stop(rt_stack.runtime, kept, automation_id, cancel_runs=True)
    assert stopped == lifecycle.Cancelling(automation_id, cancelled=6, finished=False)
    assert clock.now - 1_000.0 == 7.0
    assert kept.sent == [CancelWork(automation_id)]


@pytest.mark.parametrize("stack", ["postgres", "embedded"], indirect=True)
def test_a_stop_s_message_is_taken_by_a_worker(
    rt_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancels, "SLICE", 2)
    monkeypatch.setattr(lifecycle, "REQUEST_SECONDS", 0.0)
    automation_id, _ = parked(rt_stack, 5)
    recounted(rt_stack)
    stopped = lifecycle.stop(rt_stack.runtime, rt_stack.dispatcher, automation_id, cancel_runs=True)
    assert stopped is not None and not stopped.finished
    cancelled_by_workers(rt_stack, automation_id, 5)


def under_way(api: httpx.Client) -> dict[str, float]:
    """automations_operations_under_way on /metrics, by operation."""
    found = re.findall(
        r'^automations_operations_under_way\{operation="(\w+)"\} (\S+)$',
        api.get("/metrics").text,
        re.MULTILINE,
    )
    return {operation: float(value) for operation, value in found}


def test_nothing_starts_or_resumes_a_run_while_its_automation_s_are_cancelled(
    rt_stack: Stack, api: httpx.Client
) -> None:
    automation_id, _ = parked(rt_stack, 2)
    with transaction(rt_stack.runtime.sessions) as session:
        stop_automation(session, automation_id, cancel_runs=True, now=rt_stack.clock.now())
    ended = api.get(f"/automations/{automation_id}/runs", params={"status": "completed"})
    (done,) = ended.json()["data"]
    attempts = {
        "enable": api.patch(f"/automations/{automation_id}", json={"status": "enabled"}),
        "replay": api.post(f"/automations/{automation_id}/runs/{done['id']}/replay"),
    }
    for what, answer in attempts.items():
        assert answer.status_code == 422, (what, answer.text)
        assert answer.json()["name"] == "runs_being_cancelled", what
        assert "being cancelled" in answer.json()["message"], what
    assert mark(rt_stack, automation_id) is not None
    assert api.get(f"/automations/{automation_id}").json()["runs_cancelling"] is True
    assert under_way(api) == {"cancel_runs": 1.0, "bulk_retry": 0.0, "bulk_replay": 0.0}

    lifecycle.cancel_marked_runs(rt_stack.runtime, automation_id)
    assert api.get(f"/automations/{automation_id}").json()["runs_cancelling"] is False
    assert under_way(api)["cancel_runs"] == 0.0
    answer = api.patch(f"/automations/{automation_id}", json={"status": "enabled"})
    assert answer.status_code == 200, answer.text
    assert_cancelled(rt_stack, automation_id, 2)


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_the_dashboard_shows_a_cancel_under_way(
    rt_stack: Stack, api: httpx.Client, api_server: ApiServer
) -> None:
    automation_id, _ = parked(rt_stack, 2)
    page = f"/dashboard/automations/{automation_id}"
    with signed_in(api_server) as browser:
        assert "Cancelling its runs" not in browser.get(page).text
        with transaction(rt_stack.runtime.sessions) as session:
            stop_automation(session, automation_id, cancel_runs=True, now=rt_stack.clock.now())
        assert "Cancelling its runs in flight" in browser.get(page).text

        # Stopped again from the page, with "also cancel": the cancel is done in the request.
        token = csrf_token(browser.get(page).text)
        stopped = browser.post(f"{page}/stop", data={"csrf_token": token, "cancel_runs": "yes"})
        assert stopped.status_code == 303, stopped.text
        assert stopped.headers["location"].endswith("?notice=stopped_cancelled")
        assert "Cancelling its runs" not in browser.get(page).text
    assert_cancelled(rt_stack, automation_id, 2)


@POSTGRES_ONLY
@pytest.mark.timeout(300)
def test_a_worker_killed_in_a_slice_of_a_cancel_loses_nothing(
    rt_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = 3 * cancels.SLICE - 3_000  # the request's slice, then two in the worker
    automation_id = park_many(rt_stack, runs)
    recounted(rt_stack)
    marker = rt_stack.workdir / "killed-cancel.before_commit"
    marker.unlink(missing_ok=True)
    with rt_stack.faults(f"cancel.before_commit=kill@{marker}"):
        monkeypatch.setattr(lifecycle, "REQUEST_SECONDS", 0.0)
        stopped = lifecycle.stop(
            rt_stack.runtime, rt_stack.dispatcher, automation_id, cancel_runs=True
        )
        assert stopped is not None and stopped.cancelled == cancels.SLICE
        # The worker's first slice dies before its commit: none of its runs is cancelled.
        rt_stack.wait_for(marker.exists, timeout=60, what="the worker to die in a slice")
        rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.stale_after_seconds + 1))
        cancelled_by_workers(rt_stack, automation_id, runs)
    assert check_rollup(rt_stack.runtime) == []
