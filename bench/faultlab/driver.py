"""Drives a load through its phases: signups, the delay, payments, races, the timeouts."""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import func, select

from bench.faultlab.lab import Lab
from bench.faultlab.load import (
    AWAIT,
    DRIP_NAME,
    PAID,
    PAUSE,
    SIGNUP,
    Contact,
    frozen,
    ingest,
    retrying,
)
from engine.db import transaction
from engine.dispatch import CancelWork
from engine.executor import execute_step
from engine.lifecycle import stop_automation
from models.enums import RUN_TERMINAL, StepStatus
from models.tables import Automation, Run, RunStep
from models.tables import Contact as ContactRow

log = logging.getLogger(__name__)


class Driver:
    """Moves every run of the load to its end, one phase at a time, under whatever faults run."""

    def __init__(
        self,
        lab: Lab,
        contacts: list[Contact],
        rng: random.Random,
        patience: float,
        *,
        drip: uuid.UUID | None = None,
        broker_signups: bool = False,
    ):
        self.lab = lab
        self.contacts = contacts
        self.rng = rng
        # Seconds a wait goes on with nothing moving before the driver gives up on it: a slow
        # host moves slowly but moves, a stuck run does not (no wait outlasts Moving.OVERALL).
        self.patience = patience
        self.drip = drip  # a second automation, stopped with its runs cancelled mid-signups
        self.broker_signups = broker_signups  # enqueued for the workers, not ingested here
        self.races = 0
        self.stalls: list[str] = []
        self.waited: dict[str, float] = {}  # seconds spent in each wait, to see where time goes

    # -- reading the database ----------------------------------------------------------------

    def _scalar(self, query: object) -> int:
        def once() -> int:
            with transaction(self.lab.runtime.sessions) as session:
                return int(session.scalar(query) or 0)  # type: ignore[call-overload]

        return retrying(once)

    def count_steps(self, key: str, *statuses: str) -> int:
        query = select(func.count()).where(RunStep.step_key == key, RunStep.status.in_(statuses))
        return self._scalar(query.select_from(RunStep))

    def busy(self) -> int:
        """Steps in a worker's hands or due now: the clock must not jump over them."""
        now = self.lab.clock.now()
        due = (RunStep.status == StepStatus.PENDING) & (RunStep.due_at <= now)
        query = select(func.count()).select_from(RunStep)
        return self._scalar(query.where((RunStep.status == StepStatus.RUNNING) | due))

    def unfinished(self) -> int:
        query = select(func.count()).select_from(Run).where(Run.status.not_in(RUN_TERMINAL))
        return self._scalar(query)

    def progress(self) -> tuple[object, ...]:
        """What has moved: runs and steps counted by status (a step inserted or ended, a run
        ended, changes it)."""

        def once() -> tuple[object, ...]:
            with transaction(self.lab.runtime.sessions) as session:
                return tuple(
                    frozenset(session.execute(select(status, func.count()).group_by(status)).all())
                    for status in (Run.status, RunStep.status)
                )

        return retrying(once)

    def wait(self, what: str, done: Callable[[], bool]) -> bool:
        started = time.monotonic()
        try:
            return self._wait(what, done)
        finally:
            self.waited[what] = self.waited.get(what, 0.0) + time.monotonic() - started

    def _wait(self, what: str, done: Callable[[], bool]) -> bool:
        """Until `done`, or until `patience` seconds pass in which no run and no step moved."""
        moving = Moving(self.patience, self.progress)
        while not moving.stalled():
            if done():
                return True
            time.sleep(0.1)
        self.stalls.append(what)
        log.warning("gave up waiting for %s: %s", what, moving.why())
        return False

    # -- phases ------------------------------------------------------------------------------

    def signups(self) -> None:
        """Start every run, ten at a time, spread out so that faults land between batches."""
        n = len(self.contacts)
        for start in range(0, n, 10):
            if self.drip is not None and start == n // 20 * 10:
                self.stop_drip(self.drip)
            batch = self.contacts[start : start + 10]
            for contact in batch:
                if contact.flaky and self.lab.transport == "smtp":
                    self.lab.sink.refuse_once(contact.email)
            if self.broker_signups:
                self._enqueue([contact.email for contact in batch])
            else:
                self.lab.publish(
                    [
                        dispatch
                        for contact in batch
                        for dispatch in ingest(
                            self.lab.runtime, SIGNUP, contact.email, f"signup:{contact.email}"
                        ).dispatches
                    ]
                )
            time.sleep(self.rng.uniform(0, 0.05))
        # Runs of events on the broker start once a worker ingests them.
        self.wait("every run in its delay", lambda: self.count_steps(PAUSE, "waiting") >= n)
        self._find_runs()

    def _enqueue(self, emails: list[str]) -> None:
        """Signups for the workers to ingest (sent again whole if sending fails: their
        idempotency keys make the copies one event each)."""
        sends = [(email, f"signup:{email}") for email in emails]
        retrying(lambda: self.lab.enqueue(SIGNUP, sends))

    def stop_drip(self, drip: uuid.UUID) -> None:
        """Stop the second automation with `cancel_runs` as a stop whose request ran out of
        time does: its mark in one transaction, then every slice left to the workers."""

        def mark() -> None:
            with transaction(self.lab.runtime.sessions) as session:
                stop_automation(session, drip, cancel_runs=True, now=self.lab.clock.now())

        retrying(mark)
        self.lab.publish([CancelWork(drip)])

    def _find_runs(self) -> None:
        def once() -> dict[str, uuid.UUID]:
            with transaction(self.lab.runtime.sessions) as session:
                rows = session.execute(
                    select(ContactRow.email, Run.id, Automation.name)
                    .join(Run, Run.contact_id == ContactRow.id)
                    .join(Automation, Automation.id == Run.automation_id)
                ).all()
                return {email: run_id for email, run_id, name in rows if name != DRIP_NAME}

        runs = retrying(once)
        for contact in self.contacts:
            contact.run_id = runs.get(contact.email)

    def skip(self, delta: dt.timedelta) -> None:
        """Move the shared clock on once nothing is in a worker's hands, then sweep."""
        self.wait("no step in flight before skipping time", lambda: self.busy() == 0)
        self.lab.clock.advance(delta)
        retrying(self.lab.sweep_once)

    def payments(self) -> None:
        """order.paid for the paying contacts as soon as their wait exists, racing registration."""
        self.skip(dt.timedelta(hours=1, seconds=1))
        todo = {c.run_id: c for c in self.contacts if c.plan == "paid" and c.run_id}
        moving = Moving(self.patience, lambda: len(todo))
        while todo and not moving.stalled():
            reached = self._reached_wait(list(todo))
            batch = [todo.pop(run_id) for run_id in reached]
            self.rng.shuffle(batch)
            dispatches = []
            for contact in batch:
                result = ingest(self.lab.runtime, PAID, contact.email, f"paid:{contact.email}")
                dispatches.extend(result.dispatches)
            self.lab.publish(dispatches)
            time.sleep(0.05)
        if todo:
            # Their payment was never sent: each of their runs must take its timeout, as a
            # silent contact's does (the check expects that), and the stall is reported.
            for contact in todo.values():
                contact.plan = "silent"
            self.stalls.append(f"{len(todo)} paying contacts' waits to exist (not paid)")
            log.warning("gave up waiting for %d paying contacts' waits to exist", len(todo))
        n = len(self.contacts)
        self.wait(
            "every wait registered or resumed",
            lambda: self.count_steps(AWAIT, "waiting", "completed") >= n and self.busy() == 0,
        )

    def _reached_wait(self, run_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        def once() -> list[uuid.UUID]:
            with transaction(self.lab.runtime.sessions) as session:
                query = select(RunStep.run_id).where(
                    RunStep.step_key == AWAIT, RunStep.run_id.in_(run_ids)
                )
                return list(session.scalars(query))

        return retrying(once)

    def timeouts(self) -> None:
        self.skip(dt.timedelta(days=1, seconds=10))
        self.wait("every run to end", lambda: self.unfinished() == 0)

    # -- the event at the instant of the timeout ---------------------------------------------

    def races_at_timeout(self) -> None:
        """For each racing contact, its event and its timeout at the same instant, in parallel."""
        racing = [c for c in self.contacts if c.plan == "race" and c.run_id]
        due = self._due_times([c.run_id for c in racing if c.run_id])
        for start in range(0, len(racing), 4):
            threads = [
                threading.Thread(target=self._race, args=(c, due[c.run_id]))
                for c in racing[start : start + 4]
                if c.run_id in due
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    def _due_times(self, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, dt.datetime]:
        def once() -> dict[uuid.UUID, dt.datetime]:
            with transaction(self.lab.runtime.sessions) as session:
                rows = session.execute(
                    select(RunStep.run_id, RunStep.due_at).where(
                        RunStep.step_key == AWAIT,
                        RunStep.status == StepStatus.WAITING,
                        RunStep.run_id.in_(run_ids),
                    )
                ).all()
                # Every wait of the lab has a timeout, so a due time.
                return {run_id: due_at for run_id, due_at in rows if due_at is not None}

        return retrying(once)

    def _race(self, contact: Contact, due_at: dt.datetime) -> None:
        assert contact.run_id is not None
        run_id = contact.run_id
        rt = self.lab.runtime
        start = threading.Barrier(2)
        sent_at = due_at - dt.timedelta(microseconds=contact.delta_us)
        # Ingestion does more before its compare-and-set than the claim does: a head start of
        # a few milliseconds lets either side reach the row first.
        head_start = self.rng.uniform(0, 0.06)

        def event() -> None:
            start.wait()
            result = ingest(frozen(rt, sent_at), PAID, contact.email, f"paid:{contact.email}")
            # A retry of an ingestion that had committed says duplicate and cannot tell.
            contact.race_resumed = None if result.duplicate else bool(result.resumed)
            self.lab.publish(result.dispatches)

        def timeout() -> None:
            start.wait()
            time.sleep(head_start)
            claimer = frozen(rt, due_at, one_step=True)
            dispatches = retrying(lambda: execute_step(claimer, run_id, AWAIT))
            contact.race_timed_out = bool(dispatches)
            self.lab.publish(dispatches)

        sides = [threading.Thread(target=event), threading.Thread(target=timeout)]
        for side in sides:
            side.start()
        for side in sides:
            side.join()
        self.races += 1


class Moving:
    """A wait's patience: it runs out after `patience` seconds in which `progress` (read at
    most once `every` seconds) did not change, or after OVERALL times `patience` in all."""

    OVERALL = 5

    def __init__(self, patience: float, progress: Callable[[], object], every: float = 1.0):
        self.patience = patience
        self._progress = progress
        self._every = every
        self._started = self._moved = self._read = time.monotonic()
        self._last = progress()

    def stalled(self) -> bool:
        now = time.monotonic()
        if now - self._read >= self._every:
            current, self._read = self._progress(), now
            if current != self._last:
                self._last, self._moved = current, now
        overall = now - self._started > self.OVERALL * self.patience
        return now - self._moved > self.patience or overall

    def why(self) -> str:
        now = time.monotonic()
        if now - self._moved > self.patience:
            return f"nothing moved for {now - self._moved:.0f} s"
        return f"still moving after {now - self._started:.0f} s, {self.OVERALL} times the patience"
