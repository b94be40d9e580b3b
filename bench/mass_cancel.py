"""A stop with `cancel_runs` of an automation with many runs in flight: its time, what events
for those runs' contacts wait meanwhile, and the sweeper's ticks.

    python -m bench.mass_cancel [--runs 200000] [--database-url URL] [--redis-url URL]

Parks N runs of one automation in a 30-day delay (bench.waiting's rows, one contact each), then
stops the automation with `cancel_runs` as the API does (`engine.lifecycle.stop`), which
answers after `lifecycle.REQUEST_SECONDS` at most and sends the rest to the workers: one
Celery worker as `automations worker` runs by default, a second of slices per message
(`lifecycle.WORK_SECONDS`), until no run is left running. Meanwhile a probe thread locks one of
those runs' contacts after another, as an event for that contact would (ingestion locks its
contact first), and times each lock; and this process runs a sweeper tick every quarter of a
second, timed. Reports the answer's time, the whole cancel's time per run, the probe's longest
wait during the cancel against its longest before it, and the longest tick. The cancel goes a
slice per transaction: a contact waits for its slice at most, not for the whole cancel.
PostgreSQL only (the rows are written by one generate_series statement).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from bench import BENCH_DATABASE_URL, BENCH_REDIS_URL, report
from bench.ingest_broker import purge
from bench.procs import fresh_schema
from bench.throughput import BENCH_SECRET
from bench.waiting import park, park_many
from bench.workers import start_workers, wait_ready
from engine import sweeper
from engine.db import transaction
from engine.lifecycle import REQUEST_SECONDS, WORK_SECONDS, stop
from engine.runtime import Runtime, create_runtime
from engine.settings import Settings
from engine.store.cancels import SLICE
from models.tables import Automation, Run
from tasks.app import create_celery_app
from tasks.dispatcher import STEP_QUEUE, CeleryDispatcher

TITLE = "A stop with cancel_runs of many runs in flight: its time, and the wait of their events"
# An event for one of the runs' contacts waits at most for the slice that holds it.
WAIT_TARGET_MS = 1000
PROBE_PAUSE = 0.005
# Between two of the bench's sweeper ticks (a deployment's come every 5 s).
TICK_PAUSE = 0.25
# Before: the sweeper took four slices of a cancel a tick, 1 to 2 s.
TICK_TARGET_MS = 250
SAMPLE = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=200_000)
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL)
    parser.add_argument("--log", default="/tmp/bench-mass-cancel-worker.log")  # noqa: S108


class Probe:
    """Locks the given contacts one after another, each in its own transaction, as an event's
    ingestion locks its contact; the time each lock took, in ms."""

    def __init__(self, rt: Runtime, contacts: list[uuid.UUID]) -> None:
        self.rt, self.contacts = rt, contacts
        self.waits: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._probe, daemon=True)

    def _probe(self) -> None:
        statement = text("SELECT 1 FROM contacts WHERE id = :id FOR UPDATE")
        pick = random.Random(7)
        while not self.done.is_set():
            started = time.perf_counter()
            with transaction(self.rt.sessions) as session:
                session.execute(statement, {"id": pick.choice(self.contacts)})
            self.waits.append((time.perf_counter() - started) * 1000)
            time.sleep(PROBE_PAUSE)

    def during(self, seconds: float) -> list[float]:
        """The waits of `seconds` of probing."""
        self.thread.start()
        time.sleep(seconds)
        return self.stop()

    def stop(self) -> list[float]:
        self.done.set()
        self.thread.join()
        return self.waits


def parked(rt: Runtime, runs: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """The automation with `runs` + 1 runs waiting, and a sample of their contacts."""
    park(rt, 1)
    with transaction(rt.sessions) as session:
        automation_id, version_id = session.execute(
            select(Automation.id, Automation.current_version_id)
        ).one()
    assert version_id is not None
    park_many(rt, automation_id, version_id, runs, rt.clock.now())
    with rt.sessions.kw["bind"].begin() as conn:
        conn.execute(text("ANALYZE"))
    with transaction(rt.sessions) as session:
        contacts = list(
            session.scalars(select(Run.contact_id).where(Run.contact_id.is_not(None)).limit(SAMPLE))
        )
    return automation_id, [contact for contact in contacts if contact is not None]


def measure(rt: Runtime, runs: int, env: dict[str, str], log: Path) -> dict[str, Any]:
    automation_id, contacts = parked(rt, runs)
    before = Probe(rt, contacts).during(2.0)
    purge(rt.settings.broker_url, STEP_QUEUE)
    app = create_celery_app(rt.settings, runtime=rt)
    # As `automations worker` runs by default: prefork, a pool process per core.
    workers = start_workers(
        "wiring.worker",
        STEP_QUEUE,
        concurrency=os.cpu_count() or 1,
        pool="prefork",
        env=env,
        log=log,
    )
    try:
        wait_ready(app)
        dispatcher = CeleryDispatcher(app)
        during = Probe(rt, contacts)
        during.thread.start()
        started = time.perf_counter()
        stop(rt, dispatcher, automation_id, cancel_runs=True)
        answered = time.perf_counter() - started
        left_at_answer = running(rt)
        # The sweeper's ticks meanwhile (a tick's work: nothing due here), in this process.
        ticks: list[float] = []
        while cancelling(rt, automation_id):
            workers.check_alive(started, give_up_seconds=max(600.0, runs / 500))
            tick_started = time.perf_counter()
            sweeper.tick(rt, dispatcher)
            ticks.append((time.perf_counter() - tick_started) * 1000)
            time.sleep(TICK_PAUSE)
        seconds = time.perf_counter() - started
        waits = during.stop()
    finally:
        workers.stop()
    return {
        "runs": runs + 1,
        "slice": SLICE,
        "request_seconds": REQUEST_SECONDS,
        "work_seconds": WORK_SECONDS,
        "answer_seconds": round(answered, 2),
        "runs_left_to_the_workers": left_at_answer,
        "cancel_seconds": round(seconds, 2),
        "us_per_run": round(seconds * 1e6 / (runs + 1), 1),
        "runs_left_running": running(rt),
        "probe_before_ms": _summary(before),
        "probe_during_ms": _summary(waits),
        "sweeper_tick_ms": _summary(ticks) if ticks else None,
    }


def cancelling(rt: Runtime, automation_id: uuid.UUID) -> bool:
    """Whether the automation's mark stands: some of its runs are still to be cancelled."""
    with transaction(rt.sessions) as session:
        return (
            session.scalar(
                select(Automation.runs_cancelling_at).where(Automation.id == automation_id)
            )
            is not None
        )


def running(rt: Runtime) -> int:
    with transaction(rt.sessions) as session:
        return int(
            session.scalar(select(func.count()).select_from(Run).where(Run.status == "running"))
            or 0
        )


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "count": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
        "max": round(ordered[-1], 2),
    }


def run(args: argparse.Namespace) -> report.Result:
    settings = Settings(
        database_url=args.database_url,
        broker_url=args.redis_url,
        email_transport_url="console://",
        env="test",
        secret_key=BENCH_SECRET,  # type: ignore[arg-type]
    )
    rt = create_runtime(settings)
    fresh_schema(rt.sessions.kw["bind"])
    try:
        figures = measure(rt, args.runs, settings.process_environment(), Path(args.log))
    finally:
        rt.sessions.kw["bind"].dispose()
    return report.result("mass_cancel", TITLE, rows_of(figures), {"config": vars(args), **figures})


def rows_of(figures: dict[str, Any]) -> list[report.Row]:
    runs, before, during = figures["runs"], figures["probe_before_ms"], figures["probe_during_ms"]
    answer, bound = figures["answer_seconds"], figures["request_seconds"] + 2
    return [
        report.row(
            f"stop with cancel_runs, {runs:,} runs in flight: its answer",
            answer,
            "s",
            target=f"≤ {bound:g} s ({figures['runs_left_to_the_workers']:,} runs left to the"
            " workers)",
            met=answer <= bound,
        ),
        report.row(
            "the whole cancel (the request's slices, then the workers'): time per run",
            figures["us_per_run"],
            "µs",
        ),
        report.row(
            "runs left running once the workers are done",
            figures["runs_left_running"],
            "runs",
            target="0",
            met=figures["runs_left_running"] == 0,
        ),
        report.row(
            "an event's wait for its contact during the stop, longest",
            during["max"],
            "ms",
            baseline=before["max"],
            baseline_label="longest before the stop",
            target=f"≤ {WAIT_TARGET_MS:,} ms (a slice of {figures['slice']:,} runs)",
            met=during["max"] <= WAIT_TARGET_MS,
        ),
        *_tick_rows(figures),
    ]


def _tick_rows(figures: dict[str, Any]) -> list[report.Row]:
    ticks = figures.get("sweeper_tick_ms")
    if not ticks:
        return []  # done within the request: no tick
    return [
        report.row(
            f"a sweeper tick while the workers cancel, longest of {ticks['count']}",
            ticks["max"],
            "ms",
            target=f"≤ {TICK_TARGET_MS:,} ms (the cancel is not the sweeper's work)",
            met=ticks["max"] <= TICK_TARGET_MS,
        )
    ]


def main(argv: list[str] | None = None) -> int:
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
