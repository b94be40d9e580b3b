"""What durability costs: durable runs and steps per second against plain Celery, same broker,
same worker command line and concurrency, same Celery settings (tasks.app.celery_config).

    python -m bench.throughput [--runs 300] [--concurrency 2] [--inline-steps 8]
                               [--database-url URL] [--redis-url URL]

The reference automation: trigger -> condition -> contact_update -> send_email to a local SMTP
sink -> contact_update. The trigger completes inside ingestion, so 4 steps per run are worked by
the Celery worker. Four phases, interleaved so that a change in the machine's load hits both
sides of each ratio:

a) runs/s with instant steps inline (the default) against a plain Celery canvas chain of the
   same five steps as no-op tasks: what a run costs against the same steps, not durable;
b) steps/s with one message per step (AUTOMATIONS_INLINE_STEPS=0) against raw self-chaining
   no-op tasks: what one durable step costs against one Celery task.

The runs are started (ingested) before the clock starts, and the tables then analyzed, as
autovacuum keeps a deployment's (bench/procs.py's `analyze_tables`). CPU per step and per task is
read from /proc for the worker's parent, its pool children,
PostgreSQL and Redis (bench/cpu.py). Prints JSON and a Markdown table; the ratios are the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select

from bench import BENCH_DATABASE_URL, BENCH_REDIS_URL, report
from bench.procs import analyze_tables, ensure_database, free_port
from bench.raw_celery import DONE_KEY, NOT_SHARED
from bench.workers import POOLS, start_workers, wait_ready, worker_argv

STEPS_PER_RUN = 4
# The reference automation's five steps, as a chain of no-op tasks.
RAW_CHAIN = 5
RAW_QUEUES = "bench.raw"
OUR_QUEUES = "automations,automations.sweeper"
GIVE_UP_SECONDS = 900
TITLE = "Durable steps per second vs raw self-chaining Celery tasks"
# Outside development every process wants a real secret (engine.settings.MIN_SECRET_BYTES).
BENCH_SECRET = "bench-secret-key-not-for-production-0123456789"  # noqa: S105


def measure_raw(args: argparse.Namespace, log: Path, *, canvas: bool) -> dict[str, Any]:
    """Chains of RAW_CHAIN no-op tasks: Celery canvas chains, or tasks that send the next."""
    env = {**os.environ, "BENCH_BROKER_URL": args.redis_url}
    workers = start_workers("bench.raw_celery", RAW_QUEUES, **shape(args), env=env, log=log)
    try:
        os.environ["BENCH_BROKER_URL"] = args.redis_url
        from bench import raw_celery

        raw_celery.app.conf.broker_url = args.redis_url
        wait_ready(raw_celery.app, len(workers.pids))
        store = redis.Redis.from_url(args.redis_url)
        store.delete(DONE_KEY)
        before = workers.cpu(args.database_url)
        start = time.perf_counter()
        for n in range(args.runs):
            if canvas:
                raw_celery.plain_chain(str(n), RAW_CHAIN).apply_async()
            else:
                raw_celery.app.send_task(
                    "bench.raw.step", args=[str(n), RAW_CHAIN], queue="bench.raw"
                )
        while int(store.get(DONE_KEY) or 0) < args.runs:
            workers.check_alive(start, GIVE_UP_SECONDS)
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        spent = workers.cpu(args.database_url).minus(before)
    finally:
        workers.stop()
    tasks = args.runs * RAW_CHAIN
    return {
        "kind": "canvas chain" if canvas else "self-chaining tasks",
        "chains": args.runs,
        "tasks": tasks,
        "seconds": round(elapsed, 3),
        "chains_per_s": round(args.runs / elapsed, 1),
        "tasks_per_s": round(tasks / elapsed, 1),
        "cpu_ms_per_task": per_unit(spent, tasks),
    }


def shape(args: argparse.Namespace) -> dict[str, Any]:
    return {"concurrency": args.concurrency, "pool": args.pool}


def per_unit(spent: dict[str, float], units: int) -> dict[str, float]:
    """CPU milliseconds per unit of work, by process group."""
    return {group: round(1000 * seconds / units, 3) for group, seconds in spent.items()}


def prepare_durable(rt: Any) -> None:
    from bench.procs import fresh_schema
    from engine.db import transaction
    from engine.lifecycle import create_automation
    from engine.store import content
    from models.enums import DomainStatus, TemplateStatus

    fresh_schema(rt.sessions.kw["bind"])
    now = rt.clock.now()
    with transaction(rt.sessions) as session:
        content.create_domain(session, name="bench.test", now=now, status=DomainStatus.VERIFIED)
        template = content.create_template(
            session,
            name="bench",
            now=now,
            status=TemplateStatus.PUBLISHED,
            subject="Hi {{{N}}}",
            sender="Bench <b@bench.test>",
            html="<p>{{{N}}}</p>",
            variables=[{"key": "N", "type": "string", "fallback_value": "x"}],
        )
        create_automation(
            session,
            name="throughput",
            status="enabled",
            now=now,
            steps=[
                {"key": "start", "type": "trigger", "config": {"event_name": "bench.run"}},
                {
                    "key": "check",
                    "type": "condition",
                    "config": {"rule": {"field": "event.n", "operator": "gte", "value": 0}},
                },
                {"key": "first", "type": "contact_update", "config": {"properties": {"stage": 1}}},
                {
                    "key": "mail",
                    "type": "send_email",
                    "config": {
                        "template": {"id": str(template.id), "variables": {"N": {"var": "event.n"}}}
                    },
                },
                {"key": "last", "type": "contact_update", "config": {"properties": {"stage": 2}}},
            ],
            connections=[
                {"from": "start", "to": "check"},
                {"from": "check", "to": "first", "type": "condition_met"},
                {"from": "first", "to": "mail"},
                {"from": "mail", "to": "last"},
            ],
        )


def measure_durable(
    args: argparse.Namespace,
    log: Path,
    smtp_url: str,
    *,
    inline: int,
    prepare: Callable[[Any], None] | None = None,
    steps_per_run: int = STEPS_PER_RUN,
) -> dict[str, Any]:
    """Runs of the reference automation (or the one `prepare` makes, listening for `bench.run`,
    of `steps_per_run` steps after the trigger), with `inline` instant steps executed inline."""
    from engine.db import transaction
    from engine.runtime import create_runtime
    from engine.settings import Settings
    from models.tables import Run
    from tasks.app import create_celery_app
    from tasks.dispatcher import CeleryDispatcher

    settings = Settings(
        database_url=args.database_url,
        broker_url=args.redis_url,
        email_transport_url=smtp_url,
        env="test",
        secret_key=BENCH_SECRET,  # type: ignore[arg-type]
    )
    rt = create_runtime(settings)
    (prepare or prepare_durable)(rt)
    celery_app = create_celery_app(settings, runtime=rt)
    env = {
        **os.environ,
        "AUTOMATIONS_DATABASE_URL": args.database_url,
        "AUTOMATIONS_BROKER_URL": args.redis_url,
        "AUTOMATIONS_EMAIL_TRANSPORT_URL": smtp_url,
        "AUTOMATIONS_ENV": "test",
        "AUTOMATIONS_SECRET_KEY": BENCH_SECRET,
        "AUTOMATIONS_INLINE_STEPS": str(inline),
    }
    workers = start_workers("wiring.worker", OUR_QUEUES, **shape(args), env=env, log=log)
    try:
        wait_ready(celery_app, len(workers.pids))
        dispatcher = CeleryDispatcher(celery_app)
        dispatches = start_runs(rt, args.runs)
        analyze_tables(args.database_url)
        before = workers.cpu(args.database_url)
        start = time.perf_counter()
        dispatcher.dispatch(dispatches)
        while True:
            with transaction(rt.sessions) as session:
                done = session.scalar(
                    select(func.count()).select_from(Run).where(Run.status == "completed")
                )
            if done >= args.runs:
                break
            workers.check_alive(start, GIVE_UP_SECONDS)
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        spent = workers.cpu(args.database_url).minus(before)
    finally:
        workers.stop()
        rt.sessions.kw["bind"].dispose()
    return rates(inline, args.runs, elapsed, spent, steps_per_run)


def start_runs(rt: Any, runs: int) -> list[Any]:
    """`runs` runs of the reference automation (prepare_durable), each for a contact of its
    own, ingested in one transaction: the messages of their first steps, not yet sent."""
    from engine.db import transaction
    from engine.ingest import ingest_event

    dispatches: list[Any] = []
    with transaction(rt.sessions) as session:
        for n in range(runs):
            dispatches += ingest_event(
                session,
                rt,
                event="bench.run",
                email=f"{uuid.uuid4().hex}@bench.test",
                payload={"n": n},
                now=rt.clock.now(),
            ).dispatches
    return dispatches


def rates(
    inline: int,
    runs: int,
    seconds: float,
    spent: dict[str, float],
    steps_per_run: int = STEPS_PER_RUN,
) -> dict[str, Any]:
    """A durable phase's figures: runs and steps per second, and CPU per step by process."""
    steps = runs * steps_per_run
    return {
        "inline_steps": inline,
        "runs": runs,
        "steps": steps,
        "seconds": round(seconds, 3),
        "runs_per_s": round(runs / seconds, 1),
        "steps_per_s": round(steps / seconds, 1),
        "cpu_ms_per_step": per_unit(spent, steps),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes in all")
    parser.add_argument(
        "--pool",
        choices=POOLS,
        default="prefork",
        help="prefork: one worker with --concurrency children; solo: that many solo workers",
    )
    parser.add_argument(
        "--inline-steps", type=int, default=8, help="AUTOMATIONS_INLINE_STEPS of the first run"
    )
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL)
    parser.add_argument("--log", default="bench/results/throughput-workers.log")


class SmtpCounter:
    """The SMTP sink of the durable side: counts messages, keeps nothing."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


def celery_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What both workers ran with, for the record: the shared settings, ours only, the commands."""
    from bench.raw_celery import shared_config
    from engine.settings import Settings
    from tasks.app import celery_config

    ours = celery_config(Settings(broker_url=args.redis_url))
    return {
        "shared": shared_config(args.redis_url),
        "ours_only": {key: ours[key] for key in NOT_SHARED},
        "worker_command": {
            "raw": worker_argv("bench.raw_celery", RAW_QUEUES, args.concurrency, pool=args.pool)[
                1:
            ],
            "ours": worker_argv("wiring.worker", OUR_QUEUES, args.concurrency, pool=args.pool)[1:],
            "processes": args.concurrency if args.pool == "solo" else 1,
        },
    }


@contextmanager
def smtp_sink() -> Iterator[tuple[SmtpCounter, str]]:
    """A local SMTP server that counts what it is sent: the counter, and its smtp:// URL."""
    from aiosmtpd.controller import Controller

    sink = SmtpCounter()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield sink, f"smtp://127.0.0.1:{controller.port}"
    finally:
        controller.stop()


def log_file(args: argparse.Namespace) -> Path:
    """The workers' log of a bench (`--log`), its folder created."""
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    return log


def run(args: argparse.Namespace) -> report.Result:
    log = log_file(args)
    ensure_database(args.database_url)  # the raw baselines read its backends' CPU too
    with smtp_sink() as (sink, smtp):
        redis.Redis.from_url(args.redis_url).flushdb()
        # Interleaved, so that a change in the machine's load hits both sides of each ratio.
        chain = measure_raw(args, log, canvas=True)
        inline = measure_durable(args, log, smtp, inline=args.inline_steps)
        raw = measure_raw(args, log, canvas=False)
        per_message = measure_durable(args, log, smtp, inline=0)
    details = {
        "config": vars(args),
        "raw_celery_chain": chain,
        "raw_celery_self_chaining": raw,
        "durable_inline": inline,
        "durable_message_per_step": per_message,
        "emails_at_sink": sink.count,
        "celery_settings": celery_settings(args),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    rows = [runs_row(chain, inline), steps_row(raw, per_message), *cpu_rows(raw, per_message)]
    return report.result("throughput", TITLE, rows, details)


def runs_row(chain: dict[str, Any], durable: dict[str, Any]) -> report.Row:
    ours, baseline = durable["runs_per_s"], chain["chains_per_s"]
    return report.row(
        f"runs/s of the reference automation (5 steps, AUTOMATIONS_INLINE_STEPS="
        f"{durable['inline_steps']}, {durable['runs']} runs)",
        ours,
        "runs/s",
        baseline=baseline,
        baseline_label=f"plain Celery canvas chain of {RAW_CHAIN} no-op tasks",
        target="≥ 1.0x baseline",
        met=ours >= baseline,
    )


def steps_row(raw: dict[str, Any], durable: dict[str, Any]) -> report.Row:
    ours, baseline = durable["steps_per_s"], raw["tasks_per_s"]
    return report.row(
        f"durable steps/s, one message per step (INLINE_STEPS=0, {durable['runs']} runs)",
        ours,
        "steps/s",
        baseline=baseline,
        baseline_label="raw Celery self-chaining no-op tasks",
        target="≥ 0.8x baseline",
        met=ours >= 0.8 * baseline,
    )


def cpu_rows(raw: dict[str, Any], durable: dict[str, Any]) -> list[report.Row]:
    """CPU per durable step (one message per step) by process, next to a raw task's."""
    ours, theirs = durable["cpu_ms_per_step"], raw["cpu_ms_per_task"]
    return [
        report.row(
            f"CPU per durable step: {group.replace('_', ' ')}",
            ours.get(group, 0.0),
            "ms",
            baseline=theirs.get(group, 0.0),
            baseline_label="per raw task",
        )
        for group in ("worker_children", "worker_main", "postgres", "redis")
    ]


def main(argv: list[str] | None = None) -> int:
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
