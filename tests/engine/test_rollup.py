"""The hourly rollup equals a recount of the runs and steps after a mixed workload: runs that
complete, fail, skip, wait, are cancelled, retried one by one and in bulk, and replayed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update

from engine import content, lifecycle
from engine.bulk import parse_request, start_bulk
from engine.contacts import create_contact
from engine.db import transaction
from engine.json_limits import JsonLimits
from engine.recovery import replay_run, retry_run
from engine.rollup_check import check_rollup, describe, repair_rollup
from engine.store import rollup as rollup_store
from engine.store import rollup_notes
from engine.store.rollup import hour_of
from engine.store.rollup_notes import Notes, rows_to_write
from engine.store.rollup_rebuild import Difference, correct, rebuild
from models.enums import BulkAction
from models.ids import new_id
from models.rollups import RunRollup, StepRollup
from tests.engine.driver import T0, Driver
from tests.rollup_recount import recount, rollup

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}


def branching(template: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """kind=mail sends an email; another kind waits an hour; no kind fails the condition."""
    steps = [
        TRIGGER,
        {
            "key": "check",
            "type": "condition",
            "config": {"rule": {"field": "event.kind", "operator": "eq", "value": "mail"}},
        },
        {"key": "mail", "type": "send_email", "config": {"template": {"id": template}}},
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        {"key": "after", "type": "contact_update", "config": {"first_name": "After"}},
    ]
    connections = [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "mail", "type": "condition_met"},
        {"from": "check", "to": "pause", "type": "condition_not_met"},
        {"from": "pause", "to": "after"},
    ]
    return steps, connections


def assert_rollup_is_a_recount(driver: Driver) -> None:
    with transaction(driver.rt.sessions) as session:
        kept, truth = rollup(session), recount(session)
    assert kept == truth
    # The operator's check (set-based, in SQL) agrees with this one (row by row, in Python).
    assert check_rollup(driver.rt) == []


def test_rollup_equals_a_recount_after_a_mixed_workload(driver: Driver) -> None:
    template = driver.template(published=False)
    automation_id = driver.automation(*branching(template))
    slow = driver.automation(
        [TRIGGER, {"key": "later", "type": "delay", "config": {"duration": "3 days"}}],
        [{"from": "start", "to": "later"}],
    )
    mailed = [driver.send("user.created", f"m{n}@x.test", {"kind": "mail"}) for n in range(3)]
    broken = driver.send("user.created", "broken@x.test").run_ids[0]
    waiting = [driver.send("user.created", f"w{n}@x.test", {"kind": "wait"}) for n in range(3)]
    driver.settle(until=driver.clock.now())
    assert_rollup_is_a_recount(driver)

    with transaction(driver.rt.sessions) as session:
        now = driver.clock.now()
        lifecycle.cancel_run(session, automation_id, waiting[0].run_ids[0], now=now)
        content.publish_template(session, template, now=now)
        create_contact(
            session, email="gone@x.test", now=now, unsubscribed=True, limits=JsonLimits()
        )
    request = parse_request(
        automation_id, BulkAction.RETRY, {"error_code": "template_not_published"}
    )
    with transaction(driver.rt.sessions) as session:
        driver.enqueue(start_bulk(session, request, now=driver.clock.now()).dispatches)
    driver.enqueue(retry_run(driver.rt, automation_id, broken).dispatches)  # fails again
    driver.send("user.created", "gone@x.test", {"kind": "mail"})
    driver.settle(until=driver.clock.now())
    assert_rollup_is_a_recount(driver)

    driver.clock.advance(dt.timedelta(minutes=90))
    with transaction(driver.rt.sessions) as session:
        replayed = replay_run(
            session, driver.rt, automation_id, mailed[0].run_ids[0], now=driver.clock.now()
        )
    driver.enqueue(replayed.dispatches)
    lifecycle.stop(driver.rt, driver, slow, cancel_runs=True)
    # The cancelled wait resumed from its cancelled step, an hour and a half later.
    driver.enqueue(
        retry_run(driver.rt, automation_id, waiting[0].run_ids[0], from_cancelled=True).dispatches
    )
    driver.settle()
    assert_rollup_is_a_recount(driver)
    with transaction(driver.rt.sessions) as session:
        statuses = {str(key[2]) for key, count in recount(session)["runs"].items() if count}
    assert {"completed", "failed", "skipped", "cancelled", "retries", "replays"} <= statuses


def test_the_rebuild_counts_what_the_transactions_kept(driver: Driver) -> None:
    template = driver.template()
    automation_id = driver.automation(*branching(template))
    for n, kind in enumerate(["mail", "mail", None, "wait", "wait"]):
        driver.send("user.created", f"r{n}@x.test", {"kind": kind} if kind else None)
    driver.settle(until=driver.clock.now())
    driver.clock.advance(dt.timedelta(minutes=30))
    driver.settle()
    with transaction(driver.rt.sessions) as session:
        kept = rollup(session)
        rebuild(session.connection())
    with transaction(driver.rt.sessions) as session:
        assert rollup(session) == kept == recount(session)
    assert kept["runs"][(automation_id, hour_of(driver.clock.now()), "ended_completed")] >= 2


def test_the_check_names_each_counter_that_drifted_and_the_repair_mends_it(
    driver: Driver,
) -> None:
    automation_id = driver.automation(*branching(driver.template()))
    for n in range(3):
        driver.send("user.created", f"d{n}@x.test", {"kind": "mail"})
    driver.settle()
    assert check_rollup(driver.rt) == []
    hour = hour_of(driver.clock.now())
    day = hour - hour % 24
    with transaction(driver.rt.sessions) as session:
        assert recount(session)["runs"][(automation_id, hour, "completed")] == 3
        # Written behind the engine's back: two runs too many in the hour, a failed send in
        # the day that never happened.
        session.add(
            RunRollup(automation_id=automation_id, span=1, hour=hour, shard=99, completed=2)
        )
        session.add(
            StepRollup(
                automation_id=automation_id,
                span=24,
                hour=day,
                step_key="mail",
                step_type="send_email",
                shard=99,
                failed=1,
            )
        )

    found = check_rollup(driver.rt)

    assert found == [
        Difference("run_rollups", automation_id, 1, hour, (), "completed", 5, 3),
        Difference("step_rollups", automation_id, 24, day, ("mail", "send_email"), "failed", 1, 0),
    ]
    assert describe(found[0]) == (
        f"run_rollups automation {automation_id} hour "
        f"{driver.clock.now():%Y-%m-%d %H}:00 UTC: completed kept 5, recounted 3"
    )
    assert describe(found[1]).endswith(" UTC mail send_email: failed kept 1, recounted 0")
    assert repair_rollup(driver.rt) == found
    assert_rollup_is_a_recount(driver)
    assert repair_rollup(driver.rt) == []


def test_a_correction_read_before_more_runs_is_still_right_after_them(driver: Driver) -> None:
    automation_id = driver.automation(*branching(driver.template()))
    driver.send("user.created", "before@x.test", {"kind": "mail"})
    driver.settle()
    with transaction(driver.rt.sessions) as session:  # the day's completed run, lost
        session.execute(
            update(RunRollup)
            .where(RunRollup.automation_id == automation_id, RunRollup.span == 24)
            .values(completed=0)
        )
    found = check_rollup(driver.rt)
    assert [(d.span, d.counter, d.kept, d.recounted) for d in found] == [(24, "completed", 0, 1)]

    # Runs complete in the same hour and day between the check and the repair.
    for n in range(3):
        driver.send("user.created", f"after{n}@x.test", {"kind": "mail"})
    driver.settle()
    with transaction(driver.rt.sessions) as session:
        correct(session.connection(), found)

    assert_rollup_is_a_recount(driver)


def test_a_check_since_a_day_reads_that_day_on_and_agrees_with_the_whole_check(
    driver: Driver,
) -> None:
    automation_id = driver.automation(*branching(driver.template()))
    driver.send("user.created", "early@x.test", {"kind": "mail"})
    driver.send("user.created", "late-end@x.test", {"kind": "wait"})  # ends on the next day
    driver.settle(until=driver.clock.now())
    yesterday = hour_of(driver.clock.now())
    driver.clock.advance(dt.timedelta(days=1))
    today = driver.clock.now().date()
    driver.send("user.created", "today@x.test", {"kind": "mail"})
    driver.settle()  # the wait of yesterday's run ends today
    hour = hour_of(driver.clock.now())
    assert check_rollup(driver.rt, since=today) == check_rollup(driver.rt) == []
    with transaction(driver.rt.sessions) as session:  # drift on each side of the day
        for drifted in (yesterday, hour):
            session.add(
                RunRollup(automation_id=automation_id, span=1, hour=drifted, shard=99, failed=1)
            )

    found = check_rollup(driver.rt, since=today)

    assert [(d.span, d.hour, d.counter, d.kept, d.recounted) for d in found] == [
        (1, hour, "failed", 1, 0)
    ]
    assert len(check_rollup(driver.rt)) == 2
    assert repair_rollup(driver.rt, since=today) == found
    assert [(d.span, d.hour) for d in check_rollup(driver.rt)] == [(1, yesterday)]


def test_a_run_a_moment_before_the_hour_is_recounted_in_that_hour_and_its_bucket(
    driver: Driver,
) -> None:
    # SQLite's strftime('%s') rounds to the millisecond: 12:59:59.9996 read as 13:00:00 put
    # the run in the next hour, and its 1 ms wait a second short, in bucket 0.
    automation_id = driver.automation(
        [
            TRIGGER,
            {
                "key": "verified",
                "type": "wait_for_event",
                "config": {"event_name": "email.verified", "timeout": "1 day"},
            },
        ],
        [{"from": "start", "to": "verified"}],
    )
    driver.clock.advance(dt.timedelta(minutes=59, seconds=59, microseconds=999_600))
    run_id = driver.send("user.created", "edge@x.test").run_ids[0]
    driver.settle(until=driver.clock.now())
    driver.clock.advance(dt.timedelta(milliseconds=1))
    driver.send("email.verified", "edge@x.test")
    driver.settle(until=driver.clock.now())

    run = driver.run(run_id)
    assert run.status == "completed"
    assert run.completed_at - run.started_at == dt.timedelta(milliseconds=1)
    hour = hour_of(run.created_at)
    assert hour_of(run.completed_at) == hour + 1
    with transaction(driver.rt.sessions) as session:
        assert recount(session)["runs"][(automation_id, hour, "completed")] == 1
    assert_rollup_is_a_recount(driver)


def test_an_ingestions_counts_by_key_are_its_counts_by_run() -> None:
    # The statement that writes an ingestion's rows counts them by rollup key (`offer`); the
    # commit counts what it wrote by run. Both must add the same rows: a replay, every step end.
    first, second = new_id(), new_id()
    runs = [
        {"id": new_id(), "automation_id": owner, "status": "running", "created_at": at}
        | ({"replay_of": new_id()} if replay else {})
        for owner, at, replay in [
            (first, T0, False),
            (first, T0, True),
            (first, T0 + dt.timedelta(hours=1), False),
            (second, T0, False),
        ]
    ]
    endings = [("completed", None), ("pending", None), ("skipped", "unsubscribed")]
    steps = [
        {
            "run_id": run["id"],
            "step_key": key,
            "step_type": kind,
            "status": status,
            "skip_reason": reason,
        }
        for run in runs
        for (key, kind), (status, reason) in zip(
            [("start", "trigger"), ("wait", "delay"), ("mail", "send_email")], endings, strict=True
        )
    ]
    by_run, by_key = Notes(), Notes()
    rollup_store._count_runs(by_run, runs)
    rollup_store._count_steps(by_run, steps)
    rollup_store._count_new(by_key, runs, steps)
    assert by_key.known == by_run.known
    rollup_notes._PICK_SHARD.seed(7)
    expected = rows_to_write(by_run, by_run.known)
    rollup_notes._PICK_SHARD.seed(7)
    assert rows_to_write(by_key, by_key.known) == expected
