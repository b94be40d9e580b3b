"""A step that kills the whole process running it, as in the embedded mode: with its claim
committed apart, each death is found by the next start and counted once, and the step fails
after the bound; without, the death leaves nothing to count."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from engine import sweeper
from engine.dispatch import Dispatch
from engine.executor import execute_step
from engine.recovery import retry_run
from tests.engine.driver import Driver
from tests.engine.test_runs_in_process import TRIGGER, chain

RENAME = {"key": "rename", "type": "contact_update", "config": {"first_name": "Changed"}}


class Died(BaseException):
    """The process dying at a checkpoint: nothing after it runs, nothing records it."""


def die_at(point: str) -> Callable[[str], None]:
    def checkpoint(name: str) -> None:
        if name == point:
            raise Died(name)

    return checkpoint


def start_again(driver: Driver) -> None:
    """What a new embedded process does first: take its predecessor's claims over, then tick
    (a moment later, as its sweeper thread does)."""
    driver.queue.clear()  # the in-memory queue died with the process
    sweeper.take_over(driver.rt, driver)
    driver.clock.advance(dt.timedelta(milliseconds=1))
    driver.tick()


def execute_queue(driver: Driver, *, claim_apart: bool) -> None:
    while driver.queue:
        message = driver.queue.popleft()
        assert isinstance(message, Dispatch)
        driver.queue.extend(
            execute_step(driver.rt, message.run_id, message.step_key, claim_apart=claim_apart)
        )


def test_each_death_of_a_step_claimed_apart_counts_once_then_the_step_fails(
    driver: Driver,
) -> None:
    automation_id = driver.automation([TRIGGER, RENAME], chain("start", "rename"))
    (run_id,) = driver.send("user.created", "ada@example.test").run_ids
    unharmed = driver.rt.checkpoint
    driver.rt.checkpoint = die_at("contact_update.handler")
    bound = driver.rt.settings.step_max_worker_losses
    for death in range(1, bound + 1):
        with pytest.raises(Died):
            execute_queue(driver, claim_apart=True)  # the trigger, then the step inline
        rename = driver.steps(run_id)["rename"]
        left = (rename.status, rename.attempt, rename.worker_losses)
        assert left == ("running", death, death - 1)
        start_again(driver)
        if death < bound:
            rename = driver.steps(run_id)["rename"]
            assert (rename.worker_losses, rename.lost_attempt) == (death, death)
            # A start that dies before its first step counts that claim's death no second time.
            start_again(driver)
            assert driver.steps(run_id)["rename"].worker_losses == death
    rename = driver.steps(run_id)["rename"]
    assert (rename.status, rename.worker_losses) == ("failed", bound)
    assert rename.error["code"] == "worker_lost"
    assert driver.run(run_id).status == "failed"
    assert not driver.queue

    driver.rt.checkpoint = unharmed  # the cause found: the operator retries the run
    driver.queue.extend(retry_run(driver.rt, automation_id, run_id).dispatches)
    execute_queue(driver, claim_apart=True)
    rename = driver.steps(run_id)["rename"]
    assert (rename.status, rename.worker_losses) == ("completed", 0)
    assert driver.run(run_id).status == "completed"


def test_a_death_before_an_inline_step_claimed_for_it_is_counted_then_the_run_ends(
    driver: Driver,
) -> None:
    """The step before an inline one creates it claimed (its claim rides on that commit):
    a process that dies before executing it leaves a claim the next start takes over."""
    retag = {"key": "retag", "type": "contact_update", "config": {"last_name": "Again"}}
    driver.automation([TRIGGER, RENAME, retag], chain("start", "rename", "retag"))
    (run_id,) = driver.send("user.created", "ada@example.test").run_ids
    unharmed = driver.rt.checkpoint
    driver.rt.checkpoint = die_at("inline.before_step")
    with pytest.raises(Died):
        execute_queue(driver, claim_apart=True)
    steps = driver.steps(run_id)
    assert steps["rename"].status == "completed"
    retag_left = steps["retag"]
    assert (retag_left.status, retag_left.attempt, retag_left.dispatched_at) == (
        "running",
        1,
        None,
    )
    assert retag_left.lease_expires_at is not None
    assert not driver.queue  # no message for a step claimed for this process

    driver.rt.checkpoint = unharmed
    start_again(driver)
    execute_queue(driver, claim_apart=True)
    retag_done = driver.steps(run_id)["retag"]
    assert (retag_done.status, retag_done.attempt, retag_done.worker_losses) == (
        "completed",
        2,
        1,
    )
    assert driver.run(run_id).status == "completed"


def test_a_death_inside_the_claim_transaction_leaves_nothing_to_count(driver: Driver) -> None:
    """Why the embedded executor claims apart: a Celery worker's parent counts this death."""
    driver.automation([TRIGGER, RENAME], chain("start", "rename"))
    (run_id,) = driver.send("user.created", "ada@example.test").run_ids
    driver.rt.checkpoint = die_at("contact_update.handler")
    with pytest.raises(Died):
        execute_queue(driver, claim_apart=False)
    start_again(driver)
    rename = driver.steps(run_id)["rename"]
    assert (rename.status, rename.attempt, rename.worker_losses) == ("pending", 0, 0)
