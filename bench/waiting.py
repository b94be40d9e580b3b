"""Scale of waiting: N runs parked in a delay or a wait cost rows, not worker memory.

    python -m bench.waiting [--runs 100000] [--database-url URL] [--redis-url URL]

Parks N runs (half in a 30-day delay, half in a wait_for_event with a 30-day timeout) by bulk
inserts shaped as the executor writes them, with a Celery worker running. Reports the worker's
RSS before and after, the sweeper tick time with nothing due and with 1% due (median of ticks,
against an empty-table tick as baseline), and database bytes per waiting run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text, update

from bench import BENCH_DATABASE_URL, BENCH_REDIS_URL, report
from bench.procs import ROOT, fresh_schema, stop
from engine.clock import SystemClock
from engine.db import transaction
from engine.dispatch import NullDispatcher
from engine.lifecycle import create_automation
from engine.runtime import Runtime, create_runtime
from engine.settings import Settings
from engine.sweeper import sweep
from models.tables import Contact, Event, Run, RunStep

TABLES = ("runs", "run_steps", "events", "contacts")
# The run's own rows: the run and its steps. The trigger event and the contact are counted
# apart: a contact outlives its runs and has many, and the event is the producer's record.
RUN_TABLES = ("runs", "run_steps")
BATCH = 5000
TITLE = "Runs parked in a delay or a wait: worker memory, sweeper tick, database bytes"
# "Flat" worker memory, read with some slack: an idle prefork pool's RSS drifts by a few pages.
RSS_SLACK = 1.1
TICK_TARGET_MS = 50
BYTES_TARGET = 1024


def park(rt: Runtime, runs: int) -> None:
    """Insert `runs` runs, each with a completed trigger and a step waiting 30 days."""
    now = SystemClock().now()
    with transaction(rt.sessions) as session:
        automation = create_automation(
            session,
            name="waiting",
            status="enabled",
            now=now,
            steps=[
                {"key": "start", "type": "trigger", "config": {"event_name": "signup"}},
                {"key": "wait", "type": "delay", "config": {"duration": "30 days"}},
            ],
            connections=[{"from": "start", "to": "wait"}],
        )
        automation_id, version_id = automation.id, automation.current_version_id
    due = now + dt.timedelta(days=30)
    for start in range(0, runs, BATCH):
        contacts, events, run_rows, steps = [], [], [], []
        for n in range(start, min(start + BATCH, runs)):
            contact_id, event_id, run_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            contacts.append(
                {
                    "id": contact_id,
                    "email": f"w{n}@bench.test",
                    "unsubscribed": False,
                    "properties": {},
                    "created_at": now,
                    "updated_at": now,
                }
            )
            events.append(
                {
                    "id": event_id,
                    "name": "signup",
                    "contact_id": contact_id,
                    "payload": {"n": n},
                    "received_at": now,
                }
            )
            run_rows.append(
                {
                    "id": run_id,
                    "automation_id": automation_id,
                    "version_id": version_id,
                    "contact_id": contact_id,
                    "event_id": event_id,
                    "status": "running",
                    "started_at": now,
                    "created_at": now,
                }
            )
            base = {
                "run_id": run_id,
                "attempt": 1,
                "created_at": now,
                "started_at": now,
                "skip_reason": None,
                "wait_event": None,
                "dispatched_at": None,
            }
            steps.append(
                {
                    **base,
                    "step_key": "start",
                    "step_type": "trigger",
                    "status": "completed",
                    "branch": "default",
                    "due_at": None,
                    "completed_at": now,
                    "output": {"event_id": str(event_id)},
                }
            )
            waiting = n % 2 == 0
            steps.append(
                {
                    **base,
                    "step_key": "wait",
                    "step_type": "delay",
                    "status": "waiting",
                    "branch": None,
                    "due_at": due,
                    "completed_at": None,
                    "wait_event": None if waiting else "order.paid",
                    "output": {"duration": "30 days", "resume_at": due.isoformat()},
                }
            )
        with transaction(rt.sessions) as session:
            for model, rows in (
                (Contact, contacts),
                (Event, events),
                (Run, run_rows),
                (RunStep, steps),
            ):
                session.execute(insert(model), rows)
    with rt.sessions.kw["bind"].begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))


# `park`'s rows in a few set-based statements, for an automation that exists (no trigger
# event): a million runs in a minute, not fifteen.
_PARKED = """
CREATE TEMPORARY TABLE parked ON COMMIT DROP AS
SELECT gen_random_uuid() AS contact_id, gen_random_uuid() AS run_id
FROM generate_series(1, :runs)
"""
_PARK_RUNS = """
WITH c AS (
  INSERT INTO contacts (id, email, unsubscribed, properties, created_at, updated_at)
  SELECT contact_id, 'many-' || run_id || '@example.test', false, '{}', :now, :now FROM parked
)
INSERT INTO runs (id, automation_id, version_id, contact_id, status, started_at, created_at)
SELECT run_id, :aid, :vid, contact_id, 'running', :now, :now FROM parked
"""
_PARK_STEPS = """
INSERT INTO run_steps
  (run_id, step_key, step_type, status, attempt, created_at, started_at, completed_at,
   branch, due_at)
SELECT run_id, 'start', 'trigger', 'completed', 1, :now, :now, :now, 'default', NULL FROM parked
UNION ALL
SELECT run_id, 'wait', 'delay', 'waiting', 1, :now, :now, NULL, NULL, :due FROM parked
"""


def park_many(
    rt: Runtime, automation_id: uuid.UUID, version_id: uuid.UUID, runs: int, now: dt.datetime
) -> None:
    """`runs` more runs of `park`'s automation waiting in their delay, one new contact each,
    written set-based on PostgreSQL (no rollup: recount it after).

    The tables are analyzed once the runs are in, before their steps' foreign keys are
    checked, and again at the end, as autovacuum would soon after such a load. Otherwise the
    checks are planned from the statistics the tables had before: a table analyzed when it
    held a row (a test database, emptied between tests) is read whole for each step's run
    (minutes, for tens of thousands of runs), and so is every later read of the runs."""
    values = {"runs": runs, "aid": automation_id, "vid": version_id, "now": now}
    with transaction(rt.sessions) as session:
        session.execute(text(_PARKED), values)
        session.execute(text(_PARK_RUNS), values)
        session.execute(text("ANALYZE contacts, runs"))
        session.execute(text(_PARK_STEPS), {**values, "due": now + dt.timedelta(days=30)})
    with rt.sessions.kw["bind"].begin() as conn:
        conn.execute(text("ANALYZE contacts, runs, run_steps"))


def table_bytes(rt: Runtime, tables: tuple[str, ...] = TABLES) -> int:
    with rt.sessions.kw["bind"].connect() as conn:
        return sum(
            conn.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar_one() for t in tables
        )


def tick_ms(rt: Runtime, ticks: int = 20) -> float:
    """Median sweeper tick (one transaction) in milliseconds; nothing is enqueued."""
    samples = []
    for _ in range(ticks):
        start = time.perf_counter()
        with transaction(rt.sessions) as session:
            NullDispatcher().dispatch(sweep(session, rt, now=rt.clock.now()))
        samples.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(samples), 2)


def make_one_percent_due(rt: Runtime, runs: int) -> int:
    """Bring 1% of the waiting steps due now, not yet dispatched; how many."""
    count = max(runs // 100, 1)
    with transaction(rt.sessions) as session:
        ids = session.scalars(
            select(RunStep.run_id).where(RunStep.status == "waiting").limit(count)
        ).all()
        session.execute(
            update(RunStep)
            .where(RunStep.run_id.in_(ids), RunStep.step_key == "wait")
            .values(due_at=rt.clock.now() - dt.timedelta(seconds=1), dispatched_at=None)
        )
    return count


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (a Celery prefork pool), in KiB."""
    pids = [pid]
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
            if fields.get("PPid", "").strip() == str(pid):
                pids.append(int(status.parent.name))
    total = 0
    for one in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL)


def start_worker(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AUTOMATIONS_DATABASE_URL": args.database_url,
        "AUTOMATIONS_BROKER_URL": args.redis_url,
        "AUTOMATIONS_EMAIL_TRANSPORT_URL": "console://",
    }
    command = [sys.executable, "-m", "celery", "-A", "wiring.worker", "worker"]
    command += ["-Q", "automations,automations.sweeper", "-c", "2", "-l", "WARNING"]
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def measure(rt: Runtime, worker: subprocess.Popen[bytes], runs: int) -> dict[str, Any]:
    time.sleep(5)
    empty_tick = tick_ms(rt)
    rss_before = rss_kib(worker.pid)
    bytes_before = table_bytes(rt)
    run_bytes_before = table_bytes(rt, RUN_TABLES)
    start = time.perf_counter()
    park(rt, runs)
    park_seconds = time.perf_counter() - start
    idle_tick = tick_ms(rt)
    due = make_one_percent_due(rt, runs)
    start = time.perf_counter()
    with transaction(rt.sessions) as session:
        promoted = len(sweep(session, rt, now=rt.clock.now()))
    due_tick = round((time.perf_counter() - start) * 1000, 2)
    time.sleep(3)
    rss_after = rss_kib(worker.pid)
    bytes_per_run = (table_bytes(rt) - bytes_before) / runs
    run_bytes_per_run = (table_bytes(rt, RUN_TABLES) - run_bytes_before) / runs
    with transaction(rt.sessions) as session:
        waiting = session.scalar(
            select(func.count()).select_from(RunStep).where(RunStep.status == "waiting")
        )
    return {
        "runs": runs,
        "waiting_steps": waiting,
        "park_seconds": round(park_seconds, 1),
        "sweeper_tick_ms": {
            "empty_tables": empty_tick,
            "nothing_due": idle_tick,
            "one_percent_due": due_tick,
            "steps_promoted": promoted,
            "due": due,
        },
        "worker_rss_kib": {"before": rss_before, "after": rss_after},
        "db_bytes_per_waiting_run": round(bytes_per_run),
        "run_bytes_per_waiting_run": round(run_bytes_per_run),
    }


def run(args: argparse.Namespace) -> report.Result:
    settings = Settings(
        database_url=args.database_url,
        broker_url=args.redis_url,
        email_transport_url="console://",
        env="test",
    )
    rt = create_runtime(settings)
    fresh_schema(rt.sessions.kw["bind"])
    worker = start_worker(args)
    try:
        figures = measure(rt, worker, args.runs)
    finally:
        stop(worker)
        rt.sessions.kw["bind"].dispose()
    return report.result("waiting", TITLE, rows_of(figures), {"config": vars(args), **figures})


def rows_of(figures: dict[str, Any]) -> list[report.Row]:
    ticks, rss = figures["sweeper_tick_ms"], figures["worker_rss_kib"]
    runs, per_run = figures["runs"], figures["db_bytes_per_waiting_run"]
    own = figures["run_bytes_per_waiting_run"]
    empty = "same tick, empty tables"
    return [
        report.row(
            f"Celery worker RSS with {runs:,} runs waiting",
            rss["after"],
            "KiB",
            baseline=rss["before"],
            baseline_label="before parking them",
            target=f"flat (≤ {RSS_SLACK:g}x before)",
            met=rss["after"] <= RSS_SLACK * rss["before"],
        ),
        report.row(
            f"sweeper tick, {runs:,} waiting, nothing due",
            ticks["nothing_due"],
            "ms",
            baseline=ticks["empty_tables"],
            baseline_label=empty,
            target=f"≤ {TICK_TARGET_MS} ms",
            met=ticks["nothing_due"] <= TICK_TARGET_MS,
        ),
        report.row(
            f"sweeper tick, 1% due ({ticks['steps_promoted']:,} steps promoted)",
            ticks["one_percent_due"],
            "ms",
            baseline=ticks["empty_tables"],
            baseline_label=empty,
            target=f"≤ {TICK_TARGET_MS} ms",
            met=ticks["one_percent_due"] <= TICK_TARGET_MS,
        ),
        report.row(
            "database bytes per waiting run: the run and its steps, with indexes",
            own,
            "bytes",
            target=f"≤ 1 KB ({BYTES_TARGET:,} bytes)",
            met=own <= BYTES_TARGET,
        ),
        report.row(
            "database bytes per waiting run, with its trigger event and a new contact",
            per_run,
            "bytes",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
