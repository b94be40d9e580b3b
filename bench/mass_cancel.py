"""A stop with `cancel_runs` of an automation with many runs in flight: its time, and what events
for those runs' contacts wait meanwhile.

    python -m bench.mass_cancel [--runs 200000] [--database-url URL]

Parks N runs of one automation in a 30-day delay (bench.waiting's rows, one contact each), then
stops the automation with `cancel_runs` as the API does (`engine.lifecycle.stop`), which
answers after `lifecycle.REQUEST_SECONDS` at most, then carries on the rest as the workers do
(`lifecycle.work_cancel`, each message's share back to back, none waiting in a queue) until no
run is left running.
Meanwhile a probe thread locks one of those runs' contacts after another, as an event for that
contact would (ingestion locks its contact first), and times each lock. Reports the answer's
time, the whole cancel's time per run, and the probe's longest wait during the cancel against
its longest before it. The cancel goes a slice per transaction: a contact waits for its slice
at most, not for the whole cancel. PostgreSQL only (the rows are written by one
generate_series statement).
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import threading
import time
import uuid
from typing import Any

from sqlalchemy import func, select, text

from bench import BENCH_DATABASE_URL, report
from bench.procs import fresh_schema
from bench.waiting import park, park_many
from engine.db import transaction
from engine.dispatch import CancelWork, KeptDispatcher
from engine.lifecycle import REQUEST_SECONDS, stop, work_cancel
from engine.runtime import Runtime, create_runtime
from engine.settings import Settings
from engine.store.cancels import SLICE
from models.tables import Automation, Run

TITLE = "A stop with cancel_runs of many runs in flight: its time, and the wait of their events"
# An event for one of the runs' contacts waits at most for the slice that holds it.
WAIT_TARGET_MS = 1000
PROBE_PAUSE = 0.005
SAMPLE = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=200_000)
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)


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


def measure(rt: Runtime, runs: int) -> dict[str, Any]:
    automation_id, contacts = parked(rt, runs)
    before = Probe(rt, contacts).during(2.0)
    during = Probe(rt, contacts)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    during.thread.start()
    started = time.perf_counter()
    kept = KeptDispatcher()
    stop(rt, kept, automation_id, cancel_runs=True)
    answered = time.perf_counter() - started
    left_at_answer = running(rt)
    messages = kept.sent
    while messages:
        sent = messages.pop()
        assert isinstance(sent, CancelWork)
        messages.extend(work_cancel(rt, sent.automation_id))
    seconds = time.perf_counter() - started
    waits = during.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "runs": runs + 1,
        "slice": SLICE,
        "request_seconds": REQUEST_SECONDS,
        "answer_seconds": round(answered, 2),
        "runs_left_to_the_workers": left_at_answer,
        "cancel_seconds": round(seconds, 2),
        "us_per_run": round(seconds * 1e6 / (runs + 1), 1),
        "runs_left_running": running(rt),
        "probe_before_ms": _summary(before),
        "probe_during_ms": _summary(waits),
        "peak_rss_growth_kib": rss_after - rss_before,
    }


def running(rt: Runtime) -> int:
    with transaction(rt.sessions) as session:
        return int(
            session.scalar(select(func.count()).select_from(Run).where(Run.status == "running"))
            or 0
        )


def _summary(waits: list[float]) -> dict[str, float]:
    ordered = sorted(waits)
    return {
        "locks": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
        "max": round(ordered[-1], 2),
    }


def run(args: argparse.Namespace) -> report.Result:
    settings = Settings(
        database_url=args.database_url, email_transport_url="console://", env="test"
    )
    rt = create_runtime(settings)
    fresh_schema(rt.sessions.kw["bind"])
    try:
        figures = measure(rt, args.runs)
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
            "runs left running once the sweeper is done",
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
    ]


def main(argv: list[str] | None = None) -> int:
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
