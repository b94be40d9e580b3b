"""Latency from an event accepted by POST /events/send to its email at an SMTP sink, vs GET /health.

    python -m bench.latency [--rate R | --max-steps-per-s M] [--seconds 20] [--concurrency 2]
                            [--pool prefork|solo] [--database-url URL] [--redis-url URL]

One enabled automation: trigger (`bench.latency`) -> send_email, whose subject carries the event's
`seq`. The API runs under uvicorn and a Celery worker as docker-compose.yml runs it (prefork, a
pool process per `--concurrency`; `--pool solo` for that many solo workers) executes the
send_email step against an aiosmtpd sink, in a process of its own, that timestamps each message
by that `seq`.
Events arrive open-loop at a fixed rate, by default half the pipeline's maximum throughput
(--max-steps-per-s, or measured first as the load sends them: `measure_max`; the tables are
analyzed then, as autovacuum keeps a deployment's); the first seconds are a warm-up, discarded.
Latency is the sink's clock minus the moment just before the request was sent; the baseline: a GET
/health round trip on the same server in the same run. The client writes prebuilt requests on kept
connections and reads nothing but the answer (bench/latency_load.py): its round trip of GET /health
is within a tenth of a millisecond of wrk's. Prints JSON and a table, with that time split in six
stages (bench/latency_stages.py): API answer, queue wait, claim, render, SMTP, record.
The step queues of the bench's Redis database are emptied first: messages another run left there
(for runs of another database) would hold the worker up and pass for the pipeline's slowness.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import BENCH_DATABASE_URL, BENCH_REDIS_URL, report
from bench.ingest import STEP_QUEUES
from bench.ingest_broker import purge
from bench.latency_load import Arrivals, Client, ProtocolError, SinkProcess
from bench.latency_rows import rows_of, stage_rows
from bench.latency_stages import RETURNS_ENV, Stamps, read_returns, split
from bench.procs import (
    ROOT,
    analyze_tables,
    api_env,
    empty_database,
    serve_api,
)
from bench.workers import POOLS, start_workers, wait_ready

API_KEY = "re_bench_key_" + uuid.uuid4().hex
EVENT_NAME = "bench.latency"
# The maximum's events get sequence numbers far above any timed event, so the two never collide.
MAXIMUM_BASE = 10_000_000
# How `measure_max` drives the pipeline: for how long, and how many of its events may be sent
# but not yet at the sink (enough to keep the API and the worker busy; few enough that no
# backlog is left for the timed load to find in the queue).
MAX_SECONDS = 4.0
MAX_WINDOW = 32
TITLE = "Event accepted → email at the SMTP sink (one Celery step), open loop"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL)
    parser.add_argument("--rate", type=float, default=None, help="events/s (default: max / 2)")
    parser.add_argument(
        "--max-steps-per-s",
        type=float,
        default=None,
        help="known maximum throughput; the rate is half of it (else measured first)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=MAX_SECONDS, help="s of load to measure the max"
    )
    parser.add_argument(
        "--max-window",
        type=int,
        default=MAX_WINDOW,
        help="events sent and not yet at the sink, at most, while the max is measured",
    )
    parser.add_argument("--seconds", type=float, default=20, help="timed load after the warm-up")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load discarded first")
    parser.add_argument("--grace", type=float, default=10, help="seconds to wait for late emails")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument(
        "--pool",
        choices=POOLS,
        default="prefork",
        help="prefork: one worker with --concurrency children, as docker-compose.yml runs it; "
        "solo: --concurrency single-process workers",
    )
    parser.add_argument("--health-requests", type=int, default=500)
    parser.add_argument("--log", default=str(ROOT / "bench" / "results" / "latency-workers.log"))


# --- statistics -------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(milliseconds: Sequence[float]) -> dict[str, float]:
    ordered = sorted(milliseconds)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50": round(percentile(ordered, 50), 3),
        "p95": round(percentile(ordered, 95), 3),
        "p99": round(percentile(ordered, 99), 3),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


# --- the processes ------------------------------------------------------------------------------


def base_env(
    database_url: str, redis_url: str, transport_url: str, returns: Path
) -> dict[str, str]:
    """The processes' environment: the system clock, which the load and the sink read too (the
    database server is on this host), and where the workers note their tasks' returns."""
    env = api_env(database_url, redis_url, API_KEY, transport_url)
    return {**env, "AUTOMATIONS_CLOCK": "system", RETURNS_ENV: str(returns)}


def prepare(database_url: str) -> None:
    """An empty schema; a verified domain, a published template, the enabled automation."""
    from engine.lifecycle import create_automation
    from engine.store import content
    from models.enums import DomainStatus, TemplateStatus

    now = dt.datetime.now(dt.UTC)
    with empty_database(database_url) as session:
        content.create_domain(session, name="bench.test", now=now, status=DomainStatus.VERIFIED)
        template = content.create_template(
            session,
            name="latency",
            now=now,
            status=TemplateStatus.PUBLISHED,
            subject="Latency seq={{{SEQ}}}",
            sender="Bench <b@bench.test>",
            html="<p>Event {{{SEQ}}}</p>",
            variables=[{"key": "SEQ", "type": "number"}],
        )
        create_automation(
            session,
            name="latency",
            status="enabled",
            now=now,
            steps=[
                {"key": "start", "type": "trigger", "config": {"event_name": EVENT_NAME}},
                {
                    "key": "mail",
                    "type": "send_email",
                    "config": {
                        "template": {
                            "id": str(template.id),
                            "variables": {"SEQ": {"var": "event.seq"}},
                        }
                    },
                },
            ],
            connections=[{"from": "start", "to": "mail"}],
        )


# --- the load -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    seq: int
    scheduled: float  # when the open-loop schedule meant to send it
    sent: float  # just before the request went out
    accepted: float  # when the answer arrived
    status: int


def event_body(seq: int) -> dict[str, Any]:
    # A new contact per event, as for sign-up events: ingestion creates it.
    return {
        "event": EVENT_NAME,
        "email": f"lat{seq}-{uuid.uuid4().hex[:8]}@bench.test",
        "payload": {"seq": seq},
    }


async def time_health(client: Client, requests: int) -> list[float]:
    """Round trips of GET /health in milliseconds, one at a time, after a short warm-up."""
    request = client.request_bytes("GET", "/health")
    for _ in range(20):
        await client.send(request)
    took = []
    for _ in range(requests):
        answer = await client.send(request)
        if answer.status != 200:
            raise RuntimeError(f"GET /health answered {answer.status}: {answer.body[:200]!r}")
        took.append((answer.answered - answer.sent) * 1000)
    return took


async def wait_arrivals(sink: SinkProcess, seqs: Sequence[int], grace: float) -> Arrivals:
    """What arrived, once every seq reached the sink or `grace` seconds passed with nothing new."""
    last_count, quiet_since = -1, time.perf_counter()
    while True:
        seen = sink.snapshot()
        count = sum(seq in seen.arrivals for seq in seqs)
        if count == len(seqs):
            return seen
        if count != last_count:
            last_count, quiet_since = count, time.perf_counter()
        elif time.perf_counter() - quiet_since > grace:
            return seen
        await asyncio.sleep(0.05)


async def measure_max(
    client: Client, sink: SinkProcess, seconds: float, window: int, grace: float
) -> dict[str, Any]:
    """The pipeline's maximum, driven as the timed load drives it: one event per POST
    /events/send, each for a new contact, never more than `window` of them sent and not yet at
    the sink, for `seconds`; emails per second at the sink over the second half, once the API
    and the worker are both busy. Then every one of them is waited for, so that the timed load
    starts on an empty queue.

    Until 2026-12-07 a burst of 300 events through POST /events/batch was drained instead:
    batched ingestion costs a fraction of single events, and the API sat idle while the worker
    drained, so the rate meant as half the maximum was 0.4x to 0.85x of this maximum in the
    same hour, and near the top of that the timed load grew a queue (docs/benchmarks-log.md,
    "The latency's maximum")."""
    base = sink.count()
    sends: list[asyncio.Task[Sent]] = []
    # (when, how many had arrived): at the first look in the second half, and at the last.
    steady: tuple[float, int] | None = None
    last = (0.0, 0)
    began = time.perf_counter()
    while (now := time.perf_counter()) - began < seconds:
        arrived = sink.count() - base
        last = (now, arrived)
        if steady is None and now - began >= seconds / 2:
            steady = last
        while len(sends) - arrived < window:
            seq = MAXIMUM_BASE + len(sends)
            sends.append(asyncio.create_task(send_one(client, seq, now)))
        await asyncio.sleep(0.005)
    answers = await asyncio.gather(*sends)
    refused = [item.status for item in answers if not 200 <= item.status < 300]
    if refused:
        raise RuntimeError(
            f"{len(refused)} events refused while the maximum was measured (status {refused[0]})"
        )
    seen = await wait_arrivals(sink, [item.seq for item in answers], grace)
    if steady is None or last[1] == steady[1]:
        raise RuntimeError("no email reached the SMTP sink: is the worker running?")
    (first_at, first), (last_at, last_count) = steady, last
    return {
        "events": len(answers),
        "arrived": sum(item.seq in seen.arrivals for item in answers),
        "seconds": seconds,
        "window": window,
        "runs_per_s": round((last_count - first) / (last_at - first_at), 1),
    }


def json_body(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


async def send_one(client: Client, seq: int, scheduled: float) -> Sent:
    request = client.request_bytes("POST", "/events/send", json_body(event_body(seq)))
    try:
        answer = await client.send(request)
    except (OSError, asyncio.IncompleteReadError, ProtocolError):
        now = time.perf_counter()
        return Sent(seq, scheduled, now, now, 0)
    return Sent(seq, scheduled, answer.sent, answer.answered, answer.status)


async def open_loop(client: Client, rate: float, seconds: float) -> list[Sent]:
    """Send at fixed instants whatever the answers do, so a slow answer cannot slow the load."""
    interval = 1 / rate
    start = time.perf_counter() + 0.05
    tasks = []
    for seq in range(int(rate * seconds)):
        scheduled = start + seq * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send_one(client, seq, scheduled)))
    return list(await asyncio.gather(*tasks))


@dataclass(frozen=True)
class LoadResult:
    health_ms: list[float]
    maximum: dict[str, Any] | None
    rate: float
    rate_source: str
    sent: list[Sent]
    load_began: float
    seen: Arrivals  # what reached the sink


def choose_rate(args: argparse.Namespace, maximum: dict[str, Any] | None) -> tuple[float, str]:
    if args.rate:
        return args.rate, "--rate"
    if args.max_steps_per_s:
        return args.max_steps_per_s / 2, "half of --max-steps-per-s"
    assert maximum is not None
    return maximum["runs_per_s"] / 2, "half of the measured maximum"


async def drive(args: argparse.Namespace, base_url: str, sink: SinkProcess) -> LoadResult:
    client = Client(base_url, {"Authorization": f"Bearer {API_KEY}"})
    try:
        health_ms = await time_health(client, args.health_requests)
        maximum = None
        if not args.rate and not args.max_steps_per_s:
            maximum = await measure_max(client, sink, args.max_seconds, args.max_window, args.grace)
        rate, source = choose_rate(args, maximum)
        await asyncio.to_thread(analyze_tables, args.database_url)
        load_began = time.perf_counter()
        sent = await open_loop(client, rate, args.warmup + args.seconds)
        accepted = [item.seq for item in sent if 200 <= item.status < 300]
        seen = await wait_arrivals(sink, accepted, args.grace)
    finally:
        await client.close()
    return LoadResult(health_ms, maximum, rate, source, sent, load_began, seen)


# --- the result ---------------------------------------------------------------------------------


def analyse(load: LoadResult, warmup: float) -> dict[str, Any]:
    """Latencies of the events scheduled after the warm-up; lost = accepted but never arrived."""
    sink = load.seen
    timed = [item for item in load.sent if item.scheduled >= load.load_began + warmup]
    accepted = [item for item in timed if 200 <= item.status < 300]
    arrived = [item for item in accepted if item.seq in sink.arrivals]
    span = (max(i.sent for i in timed) - min(i.sent for i in timed)) if len(timed) > 1 else 0
    return {
        "timed": len(timed),
        "rejected": len(timed) - len(accepted),
        "unanswered": sum(item.status == 0 for item in timed),
        "arrived": len(arrived),
        "lost": len(accepted) - len(arrived),
        "achieved_rate": round((len(timed) - 1) / span, 1) if span else 0.0,
        "sent_to_sink_ms": summarize([(sink.arrivals[i.seq] - i.sent) * 1000 for i in arrived]),
        "accepted_to_sink_ms": summarize(
            [(sink.arrivals[i.seq] - i.accepted) * 1000 for i in arrived]
        ),
        "send_round_trip_ms": summarize([(i.accepted - i.sent) * 1000 for i in accepted]),
        "send_lag_behind_schedule_ms": summarize([(i.sent - i.scheduled) * 1000 for i in timed]),
    }


# perf_counter() readings as wall-clock (epoch) seconds, to compare with the database's stamps.
WALL_OFFSET = time.time() - time.perf_counter()


def summarize_stage(milliseconds: Sequence[float]) -> dict[str, float]:
    """`summarize`, and how many values are below zero (stamps of two processes' clocks)."""
    return {**summarize(milliseconds), "negative": sum(value < 0 for value in milliseconds)}


_STAGE_STAMPS = (
    "SELECT (e.payload->>'seq')::int, r.id, s.claimed_at, o.created_at FROM events e "
    "JOIN runs r ON r.event_id = e.id JOIN run_steps s ON s.run_id = r.id "
    "AND s.step_key = 'mail' JOIN outbox o ON o.run_id = r.id AND o.step_key = 'mail' "
    "WHERE e.name = :name"
)


def stage_split(
    load: LoadResult, database_url: str, warmup: float, returns: Path
) -> dict[str, Any]:
    """The six stages of bench/latency_stages.py, from the load's, the database's, the sink's
    and the workers' stamps, for each timed event whose every stamp is there; and their sum,
    request → step recorded."""
    from sqlalchemy import create_engine, text

    sink = load.seen
    timed = {
        item.seq: item
        for item in load.sent
        if item.scheduled >= load.load_began + warmup and item.seq in sink.arrivals
    }
    db_engine = create_engine(database_url)
    try:
        with db_engine.connect() as conn:
            rows = conn.execute(text(_STAGE_STAMPS), {"name": EVENT_NAME}).all()
    finally:
        db_engine.dispose()
    recorded = read_returns(returns, "mail")
    events = [
        Stamps(
            sent=item.sent + WALL_OFFSET,
            answered=item.accepted + WALL_OFFSET,
            claimed=claimed.timestamp(),
            making=making.timestamp(),
            mail_from=sink.mail_from[seq] + WALL_OFFSET,
            accepted=sink.arrivals[seq] + WALL_OFFSET,
            recorded=recorded[str(run_id)],
        )
        for seq, run_id, claimed, making in rows
        if (item := timed.get(seq)) is not None and claimed is not None and str(run_id) in recorded
    ]
    stages = {name: summarize_stage(values) for name, values in split(events).items()}
    whole = summarize([(e.recorded - e.sent) * 1000 for e in events])
    return {"stages_ms": stages, "sent_to_recorded_ms": whole}


def measure(args: argparse.Namespace, returns: Path) -> LoadResult:
    """Start the sink, the workers and the API, and drive the load; the workers note their
    tasks' returns in `returns`."""
    from engine.settings import Settings
    from tasks.app import create_celery_app

    prepare(args.database_url)
    purge(args.redis_url, *STEP_QUEUES)
    with SinkProcess() as sink:
        smtp_url = f"smtp://127.0.0.1:{sink.port}"
        env = base_env(args.database_url, args.redis_url, smtp_url, returns)
        log = Path(args.log)
        log.parent.mkdir(parents=True, exist_ok=True)
        workers = start_workers(
            "bench.latency_worker",
            "automations,automations.sweeper",
            concurrency=args.concurrency,
            pool=args.pool,
            env=env,
            log=log,
        )
        try:
            settings = Settings(database_url=args.database_url, broker_url=args.redis_url)
            wait_ready(create_celery_app(settings), len(workers.pids))
            with serve_api(env) as base_url:
                return asyncio.run(drive(args, base_url, sink))
        finally:
            workers.stop()


def run(args: argparse.Namespace) -> report.Result:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as directory:
        returns = Path(directory)
        load = measure(args, returns)
        figures = analyse(load, args.warmup)
        figures.update(stage_split(load, args.database_url, args.warmup, returns))
    health = summarize(load.health_ms)
    details = {
        "config": vars(args),
        "rate": round(load.rate, 1),
        "rate_source": load.rate_source,
        "maximum": load.maximum,
        "health_ms": health,
        "sink_messages_without_seq": load.seen.unparsed,
        **figures,
    }
    rows = rows_of(figures, health)
    rows += stage_rows(figures["stages_ms"], figures["sent_to_recorded_ms"])
    return report.result("latency", TITLE, rows, details)


def main(argv: list[str] | None = None) -> int:
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
