"""A step whose execution kills its worker every time fails after a bound, and its run with it."""

from __future__ import annotations

import datetime as dt
import signal
import time
import uuid

import pytest
import redis
from sqlalchemy import update

from engine.db import transaction
from engine.executor import execute_step
from engine.recovery import retry_run
from models.tables import RunStep
from tasks.dispatcher import STEP_QUEUE
from tests.conftest import REDIS_URL
from tests.integration.factories import (
    chain,
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack
from tests.integration.markers import CELERY_BACKENDS, POSTGRES_ONLY
from tests.integration.test_event_groups import SHORT_HEARTBEAT
from tests.rollup_recount import recount, rollup

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
UPDATE = {"key": "after", "type": "contact_update", "config": {"first_name": "Updated"}}


def mail_then_update(stack: Stack) -> uuid.UUID:
    make_domain(stack)
    steps = [TRIGGER, send_email_step("mail", make_template(stack)), UPDATE]
    return make_automation(stack, steps, chain("start", "mail", "after"))


def losses(stack: Stack, run_id: uuid.UUID, key: str) -> int:
    return stack.steps(run_id)[key].worker_losses


def assert_nothing_queued(stack: Stack, run_id: uuid.UUID) -> None:
    """No message left for the run: none queued, none held by a worker. Only the run's: the
    broker is the whole session's, and a worker may hold an earlier test's countdown."""
    stack.wait_for(lambda: nothing_queued(run_id), what="the broker to hold no message of the run")


def nothing_queued(run_id: uuid.UUID) -> bool:
    broker = redis.Redis.from_url(REDIS_URL)
    needle = str(run_id).encode()  # in each message's kwargsrepr header, in plain JSON
    entries = [*broker.lrange(STEP_QUEUE, 0, -1), *broker.hvals("unacked")]
    return not any(needle in entry for entry in entries)


@CELERY_BACKENDS
def test_a_send_that_kills_every_worker_fails_after_the_bound_and_a_retry_resumes_it(
    rt_stack: Stack,
) -> None:
    automation_id = mail_then_update(rt_stack)
    bound = rt_stack.settings.step_max_worker_losses
    address = unique_email("oom")
    with rt_stack.faults("send_email.before_send=kill"):
        (run_id,) = rt_stack.send("user.created", address).run_ids
        for death in range(1, bound):
            # The parent counts its child's death; the requeued message finds the step leased.
            rt_stack.wait_for(lambda n=death: losses(rt_stack, run_id, "mail") == n, what="a loss")
            # The sweeper takes the lease over (the same death: not counted again) and sends
            # the step to the next worker.
            rt_stack.advance(dt.timedelta(seconds=rt_stack.settings.step_lease_seconds + 1))
        run = rt_stack.wait_run(run_id)
        assert_nothing_queued(rt_stack, run_id)
        time.sleep(1)
        assert rt_stack.sweep() == 0

    assert run.status == "failed"
    mail = rt_stack.steps(run_id)["mail"]
    # One count per claim: the takeovers did not count the deaths the parent had counted.
    assert (mail.status, mail.worker_losses, mail.attempt) == ("failed", bound, bound)
    assert mail.error["code"] == "worker_lost"
    assert mail.error["message"].startswith(f"The worker running this step died {bound} times")
    assert "after" not in rt_stack.steps(run_id)
    assert rt_stack.sink.to(address) == []
    assert_rollup_is_a_recount(rt_stack)

    # The operator found the cause (the fault is gone): a retry resumes the step, counted anew.
    rt_stack.dispatcher.dispatch(retry_run(rt_stack.runtime, automation_id, run_id).dispatches)
    assert rt_stack.wait_run(run_id).status == "completed"
    mail = rt_stack.steps(run_id)["mail"]
    assert (mail.status, mail.worker_losses) == ("completed", 0)
    (message,) = rt_stack.sink.to(address)
    (row,) = rt_stack.outbox(run_id)
    assert message["Message-ID"] == f"<{row.id}@acme.test>"


@CELERY_BACKENDS
def test_an_instant_step_that_kills_every_worker_fails_after_the_bound(rt_stack: Stack) -> None:
    """Its claim dies with the transaction: only the parent process sees these deaths."""
    make_automation(rt_stack, [TRIGGER, UPDATE], chain("start", "after"))
    with rt_stack.faults("contact_update.handler=kill"):
        (run_id,) = rt_stack.send("user.created", unique_email("crash")).run_ids
        run = rt_stack.wait_run(run_id, timeout=60)
        assert_nothing_queued(rt_stack, run_id)
    assert run.status == "failed"
    after = rt_stack.steps(run_id)["after"]
    bound = rt_stack.settings.step_max_worker_losses
    assert (after.status, after.error["code"], after.worker_losses) == (
        "failed",
        "worker_lost",
        bound,
    )
    assert_rollup_is_a_recount(rt_stack)


@CELERY_BACKENDS
def test_an_instant_step_killed_once_completes_with_its_loss_counted(rt_stack: Stack) -> None:
    make_automation(rt_stack, [TRIGGER, UPDATE], chain("start", "after"))
    marker = rt_stack.workdir / "killed-once"
    marker.unlink(missing_ok=True)
    with rt_stack.faults(f"contact_update.handler=kill@{marker}"):
        (run_id,) = rt_stack.send("user.created", unique_email("once")).run_ids
        run = rt_stack.wait_run(run_id)
    assert run.status == "completed"
    after = rt_stack.steps(run_id)["after"]
    assert (after.status, after.worker_losses) == ("completed", 1)


PLAN_CHANGED = {"key": "plan", "type": "trigger", "config": {"event_name": "plan.changed"}}
CHECK = {
    "key": "check",
    "type": "condition",
    "config": {"rule": {"field": "event.plan", "operator": "eq", "value": "pro"}},
}
# Solo workers' lease: longer than a restart takes on a busy machine, so that the dead claim
# is held until the test moves the clock past it.
SOLO_LEASE = dt.timedelta(seconds=60)


def start_solo(stack: Stack, **env: str) -> None:
    """A solo worker, started again after each death as a supervisor does (systemd, compose): a
    start killed by the step it took before it answered the harness's ping is a death too."""
    lease = {"AUTOMATIONS_STEP_LEASE_SECONDS": str(SOLO_LEASE.total_seconds())}
    try:
        stack.start_worker("--pool", "solo", **SHORT_HEARTBEAT, **lease, **env)
    except RuntimeError:
        assert stack.worker is not None
        assert stack.worker.poll() == -signal.SIGKILL


def worker_died(stack: Stack) -> bool:
    return stack.worker is not None and stack.worker.poll() is not None


def kill_solo_workers(stack: Stack, point: str, key: str, address: str) -> uuid.UUID:
    """A run whose step `key` kills every solo worker at `point`, each started again after its
    death: the run, once it has ended, with the last worker alive."""
    bound = stack.settings.step_max_worker_losses
    kill = {"AUTOMATIONS_FAULT_INJECTION": f"{point}=kill"}
    stack.stop_worker()
    try:
        start_solo(stack, **kill)
        (run_id,) = stack.send("user.created", address).run_ids
        for death in range(1, bound + 1):
            stack.wait_for(lambda: worker_died(stack), what=f"death {death}")
            start_solo(stack, **kill)
            if death == 1:
                # The dead worker's message comes back and is dropped: the step is held by
                # the dead claim until its lease runs out (not run twice at once, not a
                # death more), and the new worker lives.
                stack.wait_for(
                    lambda: worker_died(stack) or nothing_queued(run_id),
                    what="the dead worker's message to come back",
                )
                assert not worker_died(stack), "the message came back and killed the next worker"
            step = stack.steps(run_id)[key]
            assert (step.status, step.attempt, step.worker_losses) == ("running", death, death - 1)
            # The sweeper takes the lease over: the death counted, and the step sent again or,
            # at the bound, failed.
            stack.advance(SOLO_LEASE + dt.timedelta(seconds=1))
        stack.wait_run(run_id)
        assert_nothing_queued(stack, run_id)
        # The worker stays up, and runs the steps of other runs.
        make_automation(stack, [PLAN_CHANGED, CHECK], chain("plan", "check"))
        (other,) = stack.send("plan.changed", address, {"plan": "pro"}).run_ids
        assert stack.wait_run(other).status == "completed"
        assert not worker_died(stack)
    finally:
        stack.restart_worker()
    return run_id


def assert_failed_at_the_bound(stack: Stack, run_id: uuid.UUID, key: str) -> None:
    assert stack.run(run_id).status == "failed"
    step = stack.steps(run_id)[key]
    bound = stack.settings.step_max_worker_losses
    assert (step.status, step.error["code"], step.worker_losses, step.attempt) == (
        "failed",
        "worker_lost",
        bound,
        bound,
    )
    assert_rollup_is_a_recount(stack)


@CELERY_BACKENDS
def test_an_instant_step_that_kills_every_solo_worker_fails_after_the_bound(
    rt_stack: Stack,
) -> None:
    """A solo worker has no parent to count its death: its claim commits before the step runs,
    and the sweeper counts each lease it takes over, failing the step at the bound."""
    make_automation(rt_stack, [TRIGGER, UPDATE], chain("start", "after"))
    run_id = kill_solo_workers(rt_stack, "contact_update.handler", "after", unique_email("solo"))
    assert_failed_at_the_bound(rt_stack, run_id, "after")


@POSTGRES_ONLY
@pytest.mark.parametrize("point", ["handler", "before_send", "after_send"])
def test_a_send_that_kills_every_solo_worker_fails_after_the_bound(
    rt_stack: Stack, point: str
) -> None:
    """Killed while it renders its email (inside what was its claim's transaction), before it
    sends, or after: each death is counted and the step fails at the bound."""
    mail_then_update(rt_stack)
    address = unique_email("solo")
    run_id = kill_solo_workers(rt_stack, f"send_email.{point}", "mail", address)
    assert_failed_at_the_bound(rt_stack, run_id, "mail")
    assert "after" not in rt_stack.steps(run_id)
    # Each worker killed after its send had sent the email, under the one Message-ID.
    sent = rt_stack.sink.to(address)
    bound = rt_stack.settings.step_max_worker_losses
    assert len(sent) == (bound if point == "after_send" else 0)
    assert len({message["Message-ID"] for message in sent}) == min(len(sent), 1)


def assert_rollup_is_a_recount(stack: Stack) -> None:
    """The failure went the way of any other: the rollup counted it as a recount does."""
    with transaction(stack.runtime.sessions) as session:
        assert rollup(session) == recount(session)


def abandon(stack: Stack, run_id: uuid.UUID, key: str, attempt: int) -> None:
    """The step as a worker that claimed it (claim `attempt`) and died leaves it."""
    with transaction(stack.runtime.sessions) as session:
        session.execute(
            update(RunStep)
            .where(RunStep.run_id == run_id, RunStep.step_key == key)
            .values(
                status="running",
                attempt=attempt,
                lease_expires_at=stack.clock.now() - dt.timedelta(seconds=1),
                dispatched_at=None,
            )
        )


@POSTGRES_ONLY
def test_the_sweeper_counts_each_lease_it_takes_over_once_and_fails_the_step_at_the_bound(
    rt_stack: Stack,
) -> None:
    """A whole worker killed (no parent left to tell): each takeover is the death."""
    mail_then_update(rt_stack)
    rt_stack.stop_worker()
    try:
        (run_id,) = rt_stack.send("user.created", unique_email("swept")).run_ids
        bound = rt_stack.settings.step_max_worker_losses
        for claim in range(1, bound):
            abandon(rt_stack, run_id, "mail", claim)
            assert rt_stack.sweep() == 1
            # A later re-send of the same abandoned claim is not another death.
            rt_stack.clock.advance(dt.timedelta(seconds=rt_stack.settings.stale_after_seconds))
            abandon(rt_stack, run_id, "mail", claim)
            assert rt_stack.sweep() == 1
            mail = rt_stack.steps(run_id)["mail"]
            assert (mail.status, mail.worker_losses, mail.lost_attempt) == (
                "running",
                claim,
                claim,
            )
        abandon(rt_stack, run_id, "mail", bound)
        assert rt_stack.sweep() == 0
    finally:
        redis.Redis.from_url(REDIS_URL).delete(STEP_QUEUE)
        rt_stack.start_worker()
    assert rt_stack.run(run_id).status == "failed"
    mail = rt_stack.steps(run_id)["mail"]
    assert (mail.status, mail.error["code"], mail.worker_losses) == ("failed", "worker_lost", bound)
    assert_rollup_is_a_recount(rt_stack)


@POSTGRES_ONLY
def test_a_message_delivered_again_does_not_take_over_an_uncounted_claim(
    rt_stack: Stack,
) -> None:
    """A solo worker died running the step (no parent to count it) and the broker delivered
    its message again once the lease had run out, before the sweeper's tick: taken over by
    the message, the death would go uncounted, and a step that kills its worker would run
    again forever. The message finds the step not claimable; the sweeper counts the death."""
    mail_then_update(rt_stack)
    rt_stack.stop_worker()
    try:
        (run_id,) = rt_stack.send("user.created", unique_email("again")).run_ids
        abandon(rt_stack, run_id, "mail", 1)
        execute_step(rt_stack.runtime, run_id, "mail")
        mail = rt_stack.steps(run_id)["mail"]
        assert (mail.status, mail.attempt, mail.worker_losses) == ("running", 1, 0)

        assert rt_stack.sweep() == 1  # taken over: the death counted, the step sent again
        execute_step(rt_stack.runtime, run_id, "mail")
        mail = rt_stack.steps(run_id)["mail"]
        assert (mail.status, mail.attempt, mail.worker_losses) == ("completed", 2, 1)
    finally:
        redis.Redis.from_url(REDIS_URL).delete(STEP_QUEUE)
        rt_stack.start_worker()
