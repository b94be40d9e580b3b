"""Counting the deaths of a step's workers: once per claim, a failure past the bound."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.concurrency.solo import TaskPool as SoloPool

from engine import faults
from engine.settings import Settings
from engine.store.sweeps import DueStep
from engine.worker_loss import WORKER_LOST, losses_after_takeover, lost
from models.enums import StepType
from tasks.app import RuntimeHolder, create_celery_app
from tasks.lost_workers import ClaimPolicy, StepRequest

T0 = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)


def abandoned(attempt: int, losses: int, lost_attempt: int | None) -> DueStep:
    return DueStep(uuid.uuid4(), "mail", "send_email", T0, T0, T0, 0, attempt, losses, lost_attempt)


@pytest.mark.parametrize(
    ("attempt", "losses", "lost_attempt", "after"),
    [
        (1, 0, None, 1),  # the first claim's death, seen first by the sweeper
        (2, 1, 1, 2),  # a new claim died: the earlier one was counted, this one not yet
        (2, 2, 2, 2),  # the parent process counted this claim's death already
        (3, 2, 2, 3),
    ],
)
def test_a_takeover_counts_the_claims_death_unless_it_was_counted(
    attempt: int, losses: int, lost_attempt: int | None, after: int
) -> None:
    assert losses_after_takeover(abandoned(attempt, losses, lost_attempt)) == after


def test_the_failure_names_its_code_and_how_many_times_the_worker_died() -> None:
    failed = lost(3)
    assert failed.code == WORKER_LOST == "worker_lost"
    assert failed.message.startswith("The worker running this step died 3 times while running it")


def test_the_bound_is_a_setting_of_at_least_one() -> None:
    assert Settings().step_max_worker_losses == 3
    with pytest.raises(ValueError, match="step_max_worker_losses"):
        Settings(step_max_worker_losses=0)


def test_every_step_task_counts_a_lost_child_in_the_parent() -> None:
    app = create_celery_app(Settings())
    for step_type in StepType:
        assert app.tasks[f"automations.steps.{step_type.value}"].Request is StepRequest


@pytest.mark.parametrize(
    ("pool", "apart"),
    [("prefork", False), (PreforkPool, False), ("solo", True), (SoloPool, True), ("threads", True)],
)
def test_steps_claim_apart_unless_a_prefork_parent_counts_their_deaths(
    pool: object, apart: bool
) -> None:
    """The pool as Celery's settings name it, or as its command line hands it over."""
    claims = ClaimPolicy()
    claims.for_pool(sender=SimpleNamespace(pool_cls=pool))
    assert claims.apart is apart


class Engine:
    def __init__(self) -> None:
        self.disposed = 0

    def dispose(self) -> None:
        self.disposed += 1


class Sessions:
    def __init__(self) -> None:
        self.kw = {"bind": Engine()}


class FakeRuntime:
    def __init__(self) -> None:
        self.sessions = Sessions()


def test_the_parent_closes_its_connections_after_counting_so_no_child_inherits_one() -> None:
    rt: Any = FakeRuntime()
    holder = RuntimeHolder(Settings(), runtime=rt)
    assert holder.in_parent(lambda got: got is rt) is True
    with pytest.raises(RuntimeError):
        holder.in_parent(lambda _: (_ for _ in ()).throw(RuntimeError("database away")))
    assert rt.sessions.kw["bind"].disposed == 2


def test_a_kill_fault_without_a_marker_kills_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    killed: list[int] = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: killed.append(sig))
    checkpoint = faults.checkpoint_from_setting("send_email.before_send=kill")
    checkpoint("send_email.after_send")
    checkpoint("send_email.before_send")
    checkpoint("send_email.before_send")
    assert killed == [faults.signal.SIGKILL] * 2


def test_a_sleep_fault_pauses_every_time_for_its_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(faults.time, "sleep", slept.append)
    checkpoint = faults.checkpoint_from_setting("contact_update.handler=sleep@2.5")
    checkpoint("condition.handler")
    checkpoint("contact_update.handler")
    checkpoint("contact_update.handler")
    assert slept == [2.5, 2.5]


def test_a_plan_file_is_read_again_each_time_it_is_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    killed: list[int] = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: killed.append(sig))
    plan = tmp_path / "plan"
    checkpoint = faults.checkpoint_from_setting(f"@{plan}")

    def replace(text: str) -> None:
        draft = tmp_path / "draft"
        draft.write_text(text)
        draft.replace(plan)

    checkpoint("send_email.before_send")  # no file: no fault
    replace("send_email.before_send=kill")
    checkpoint("send_email.before_send")
    checkpoint("send_email.after_send")
    assert killed == [faults.signal.SIGKILL]
    replace("")
    checkpoint("send_email.before_send")
    replace("send_email.after_send=kill")
    checkpoint("send_email.after_send")
    plan.unlink()
    checkpoint("send_email.after_send")
    assert killed == [faults.signal.SIGKILL] * 2
    replace("send_email.after_send=explode")
    with pytest.raises(
        ValueError, match=re.escape("unknown fault 'send_email.after_send=explode'")
    ):
        checkpoint("condition.handler")


def test_a_plan_file_needs_its_path() -> None:
    with pytest.raises(ValueError, match="a fault plan file after @ is missing"):
        faults.checkpoint_from_setting("@")


@pytest.mark.parametrize("value", ["", "0", "-1", "nan", "inf", "two"])
def test_a_sleep_fault_needs_a_positive_number_of_seconds(value: str) -> None:
    item = f"contact_update.handler=sleep@{value}"
    with pytest.raises(ValueError) as refused:
        faults.checkpoint_from_setting(item)
    assert str(refused.value).startswith(f"unknown fault {item!r}: expected ")
    assert "point=sleep@seconds (a positive number)" in str(refused.value)
