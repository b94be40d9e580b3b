"""Events accepted per second, over HTTP and through the broker, against GET /health.

    python -m bench.ingest [--duration 10] [--database-url URL] [--redis-url URL]

Set-up: `make bench-setup` (installs wrk, the load generator; the bench says so if it is
missing), and a PostgreSQL database of its own (created if absent; its schema is dropped and
created anew) and a Redis database whose `automations` queue it may purge.

Starts the API as production runs it (uvicorn, several worker processes, PostgreSQL, Redis as
broker) with one enabled automation listening for the event, so that every accepted event is a
committed transaction that starts a run and publishes its next step. After a warm-up (seconds
of POST /events/batch, `--warm-seconds`) the tables are analyzed, as autovacuum keeps a
deployment's (bench/procs.py's `analyze_tables` says why). Then drives it with `wrk`
for the same time and connections: `GET /health`, `POST /events/send` and `POST /events/batch`
(every event for a new contact), and measures the accept latency at about half the maximum
rate (as many connections, each pausing at random between requests: `half_rate`). Then one
worker process drains `automations.events.send` messages and `automations.events.send_batch`
messages enqueued beforehand. The load generator's CPU is read
from /proc: a run where it used more than half a core fails, since the client may then be what
was measured. Prints JSON and a table, and writes the result only where `--results PATH`
says (bench/results/ingest.json is the committed record).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import sys
import uuid
from pathlib import Path
from typing import Any

from bench import BENCH_REDIS_URL, cpu, ingest_broker, loadgen, report
from bench.procs import (
    ROOT,
    analyze_tables,
    api_env,
    empty_database,
    serve_api,
)

API_KEY = "re_bench_key_" + uuid.uuid4().hex
TITLE = "Events accepted per second (HTTP and broker) vs GET /health, same server, same run"
RESULTS = ROOT / "bench" / "results" / "ingest.json"
STEP_QUEUES = ("automations", "automations.sweeper")
# half_rate's calibration: at most this many probes, done once one is this close to the target.
PROBES = 3
PACE_TOLERANCE = 0.1


def prepare(database_url: str) -> None:
    """An empty schema with one enabled automation: `bench.event` starts a run whose next step
    (a day's delay) is published after the commit."""
    from engine.lifecycle import create_automation

    with empty_database(database_url) as session:
        create_automation(
            session,
            name="bench",
            status="enabled",
            steps=[
                {"key": "start", "type": "trigger", "config": {"event_name": "bench.event"}},
                {"key": "wait", "type": "delay", "config": {"duration": "1 day"}},
            ],
            connections=[{"from": "start", "to": "wait"}],
            now=dt.datetime.now(dt.UTC),
        )


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """Production's settings: AUTOMATIONS_ENV=production, a real secret, the console mailer."""
    env = api_env(args.database_url, args.redis_url, API_KEY)
    env.update(
        {
            "AUTOMATIONS_ENV": "production",
            "AUTOMATIONS_SECRET_KEY": secrets.token_urlsafe(48),
            "AUTOMATIONS_LOG_LEVEL": "WARNING",
        }
    )
    return env


def api_server_pid(base_url: str) -> int:
    """The uvicorn parent serving this URL (its worker processes are its children)."""
    port = base_url.rsplit(":", 1)[1].encode()
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"wiring.server:create" in argv and port in argv:
            return int(entry.name)
    raise RuntimeError(f"no uvicorn process found for {base_url}")


def cpu_per(spent: dict[str, float], count: int) -> dict[str, float]:
    """ms of CPU per request or event: the API's (or worker's) processes, PostgreSQL, Redis."""
    own = spent.get("worker_main", 0.0) + spent.get("worker_children", 0.0)
    totals = {"ours": own, "postgres": spent.get("postgres", 0.0), "redis": spent["redis"]}
    return {name: round(seconds * 1000 / max(count, 1), 3) for name, seconds in totals.items()}


def measure_http(
    args: argparse.Namespace, base_url: str, costs: dict[str, dict[str, float]]
) -> tuple[dict[str, loadgen.Load], dict[str, list[loadgen.Load]]]:
    """Each endpoint's best run over the sweep of `--connections`, and every run of the sweep;
    the CPU each request or event of a best run cost goes into `costs`."""
    run = uuid.uuid4().hex[:8]
    server = [api_server_pid(base_url)]
    sweep: dict[str, list[loadgen.Load]] = {}

    def fire(path: str, mode: str, **shot: Any) -> tuple[loadgen.Load, dict[str, float]]:
        options = {"seconds": args.duration, "connections": args.connections[0], **shot}
        options.setdefault("threads", args.threads)
        one = loadgen.Shot(base_url + path, mode, batch=args.batch, **options)
        before = cpu.snapshot(server, database_url=args.database_url)
        load = loadgen.fire(one, api_key=API_KEY, run_id=run)
        spent = cpu.snapshot(server, database_url=args.database_url).minus(before)
        return load, cpu_per(spent, load.requests * (args.batch if mode == "batch" else 1))

    def best(path: str, mode: str) -> loadgen.Load:
        measured = [fire(path, mode, connections=n) for n in args.connections]
        sweep[mode] = [load for load, _ in measured]
        load, cost = max(measured, key=lambda one: fastest(one[0]))
        costs[mode] = cost
        return load

    fire("/health", "health", seconds=1)  # warm-up: connections, each worker's first requests
    fire("/events/send", "send", seconds=1)
    fire("/events/batch", "batch", seconds=args.warm_seconds)
    analyze_tables(args.database_url)
    loads = {
        "health": best("/health", "health"),
        "events_send": best("/events/send", "send"),
        "events_batch": best("/events/batch", "batch"),
    }
    loads["accept_latency"] = half_rate(
        lambda path, mode, **shot: fire(path, mode, **shot)[0],
        loads["events_send"].per_second,
        connections=max(args.connections),
        threads=args.threads,
        seconds=args.duration,
    )
    return loads, sweep


def fastest(load: loadgen.Load) -> tuple[bool, float]:
    """How a sweep's runs rank: without errors first (refusals are fast), then by rate."""
    return (load.errors == 0, load.per_second)


def half_rate(
    fire: Any, maximum: float, *, connections: int, threads: int, seconds: float
) -> loadgen.Load:
    """/events/send at about half its maximum rate, from `connections` callers that each wait
    a random time between an answer and their next request (wrk_events.lua's pace): the most
    of the sweep, so that the callers arrive at random more than they wait for each other.

    Not fewer connections sending back to back: each would send its next request the moment it
    is answered, so the rate would be connections / latency and the latency, by Little's law,
    connections / rate; never a server's latency under a given load. A connection's rate is
    1 / (latency + pace): a short probe at a pace measures the latency under that load, and the
    next pace takes it off the period the target rate needs. The latency grows with the rate,
    so one correction can overshoot: up to PROBES probes, until one lands within PACE_TOLERANCE
    of the target."""
    target = max(maximum / 2, 1.0)
    threads = min(connections, threads)
    period = connections * 1000 / target  # ms between a connection's requests, latency included
    pace = period
    for _ in range(PROBES):
        probe = fire(
            "/events/send",
            "send",
            connections=connections,
            threads=threads,
            seconds=min(seconds, 3),
            pace_ms=pace,
        )
        rate = max(probe.per_second, 1.0)
        latency = max(connections * 1000 / rate - pace, 0.0)  # the cycle measured, less the pace
        pace = max(period - latency, 0.0)
        if abs(rate / target - 1) <= PACE_TOLERANCE:
            break
    return fire(  # type: ignore[no-any-return]
        "/events/send", "send", connections=connections, threads=threads, pace_ms=pace
    )


def measure_broker(
    args: argparse.Namespace,
    costs: dict[str, dict[str, float]],
    root: Path = ROOT,
    pool: str = "prefork",
) -> dict[str, ingest_broker.Drained]:
    prepare(args.database_url)  # fresh tables: the worker starts from what a deployment has
    ingest_broker.purge(args.redis_url, ingest_broker.QUEUE, *STEP_QUEUES)
    env = server_env(args)
    drained = {}
    with ingest_broker.one_worker(env, args.log, args.redis_url, root, pool) as (client, pids):
        # Tables of some thousand rows, analyzed, as the HTTP phases had (`analyze_tables`).
        events = args.warm_seconds * 2000
        ingest_broker.drain(client, args.database_url, events=events, per_message=args.batch)
        analyze_tables(args.database_url)
        for name, events, per_message in (
            ("task_send", args.task_events, 1),
            ("task_send_batch", args.batch_task_events, args.batch),
        ):
            before = cpu.snapshot(pids, database_url=args.database_url)
            drained[name] = ingest_broker.drain(
                client, args.database_url, events=events, per_message=per_message
            )
            spent = cpu.snapshot(pids, database_url=args.database_url).minus(before)
            costs[name] = cpu_per(spent, events)
    ingest_broker.purge(args.redis_url, ingest_broker.QUEUE, *STEP_QUEUES)
    return drained


def connection_counts(text: str) -> tuple[int, ...]:
    """`--connections`: one count or several, comma-separated, each at least 1."""
    try:
        counts = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("connections are at least 1")
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", default="postgresql+psycopg://postgres@127.0.0.1/bench_ingest"
    )
    parser.add_argument("--redis-url", "--broker-url", dest="redis_url", default=BENCH_REDIS_URL)
    parser.add_argument(
        "--duration", "--seconds", dest="duration", type=float, default=10, help="s per wrk run"
    )
    parser.add_argument(
        "--connections",
        type=connection_counts,
        default=(4, 8, 32, 128),
        help="wrk connections, comma-separated: each endpoint is measured at each, and its"
        " best rate is its maximum (default 4,8,32,128)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--batch", type=int, default=100, help="events per batch request")
    parser.add_argument(
        "--api-workers", type=int, default=os.cpu_count() or 1, help="uvicorn worker processes"
    )
    parser.add_argument(
        "--warm-seconds",
        type=int,
        default=5,
        help="s of POST /events/batch (2,000 events per s through the broker) before the"
        " database is analyzed and the measures start",
    )
    parser.add_argument("--task-events", type=int, default=5000)
    # About 6 s at 10,000 events/s: 20,000 (2 s) varied by a fifth from run to run.
    parser.add_argument("--batch-task-events", type=int, default=60000)
    parser.add_argument("--log", type=Path, default=Path("/tmp/bench-ingest-worker.log"))  # noqa: S108
    parser.add_argument(
        "--results", type=Path, help=f"also write the result here, e.g. {RESULTS.relative_to(ROOT)}"
    )


def run(args: argparse.Namespace) -> report.Result:
    loadgen.wrk_binary()  # before anything is started: say how to install it
    prepare(args.database_url)  # the database created if absent (bench/procs.py)
    ingest_broker.purge(args.redis_url, *STEP_QUEUES)
    costs: dict[str, dict[str, float]] = {}
    with serve_api(server_env(args), workers=args.api_workers) as base_url:
        loads, sweep = measure_http(args, base_url, costs)
    drained = measure_broker(args, costs)
    details = {
        # Less sensitive to other load on the machine than rates: CPU ms per request or event.
        "cpu_ms": costs,
        "config": vars(args) | {"log": str(args.log)},
        "http": {name: figures_of(load) for name, load in loads.items()},
        # Every run of the sweep, by endpoint: where each one's maximum lies.
        "sweep": {mode: [figures_of(load) for load in runs] for mode, runs in sweep.items()},
        "broker": {
            name: vars(one) | {"per_second": one.per_second} for name, one in drained.items()
        },
    }
    rows = rows_of(loads, drained, args.batch) + cost_rows(costs)
    result = report.result("ingest", TITLE, rows, details)
    report.write_result(args.results, result)
    return result


def cost_rows(costs: dict[str, dict[str, float]]) -> list[report.Row]:
    """CPU per event (ours + PostgreSQL + Redis) against CPU per GET /health request."""
    base = round(sum(costs["health"].values()), 3)
    rows = []
    for mode, label in (
        ("send", "POST /events/send"),
        ("batch", "POST /events/batch"),
        ("task_send", "automations.events.send"),
        ("task_send_batch", "automations.events.send_batch"),
    ):
        one = costs[mode]
        parts = ", ".join(f"{name} {ms:.2f}" for name, ms in one.items())
        rows.append(
            report.row(
                f"CPU per event, {label} ({parts})",
                round(sum(one.values()), 3),
                "ms",
                baseline=base,
                baseline_label="CPU per GET /health request",
            )
        )
    return rows


def figures_of(load: loadgen.Load) -> dict[str, Any]:
    return vars(load) | {"per_second": load.per_second, "client_cores": load.client_cores}


def rows_of(
    loads: dict[str, loadgen.Load], drained: dict[str, ingest_broker.Drained], batch: int
) -> list[report.Row]:
    health = round(loads["health"].per_second, 1)
    same = "GET /health requests/s, same server"

    def versus(metric: str, events: float, target: float, errors: int = 0) -> report.Row:
        # Refused requests are fast: a rate with errors in it is not a rate of accepted events.
        if errors:
            metric += f" ({errors} errors)"
        return report.row(
            metric,
            round(events, 1),
            "events/s",
            baseline=health,
            baseline_label=same,
            target=f"≥ {target:,.0f} events/s",
            met=events >= target and not errors,
        )

    send, batched, latency = loads["events_send"], loads["events_batch"], loads["accept_latency"]
    rows = [
        report.row(
            f"GET /health{at_most(loads['health'])}", health, "requests/s", target=None, met=None
        ),
        versus(
            f"POST /events/send, one event per request{at_most(send)}",
            send.per_second,
            health / 2,
            send.errors,
        ),
        versus(
            f"POST /events/batch, {batch} events per request{at_most(batched)}",
            batched.per_second * batch,
            10_000,
            batched.errors,
        ),
        versus("automations.events.send, one worker", drained["task_send"].per_second, 2000),
        versus(
            f"automations.events.send_batch ({batch} per message), one worker",
            drained["task_send_batch"].per_second,
            10_000,
        ),
    ]
    at = (
        f"at {latency.per_second:,.0f} req/s ({latency.per_second / send.per_second:.2f}x max,"
        f" {latency.connections} callers)"
    )
    rows.append(
        report.row(
            f"accept latency p50 {at}",
            round(latency.p50_ms, 2),
            "ms",
            target="≤ 3 ms",
            met=latency.p50_ms <= 3,
        )
    )
    rows.append(
        report.row(
            f"accept latency p99 {at}",
            round(latency.p99_ms, 2),
            "ms",
            target="≤ 15 ms",
            met=latency.p99_ms <= 15,
        )
    )
    cores = max(load.client_cores for load in loads.values())
    rows.append(
        report.row(
            "wrk CPU, the busiest run",
            round(cores, 3),
            "cores",
            target=f"< {loadgen.MAX_CLIENT_CORES} core",
            met=True,
        )
    )
    return rows


def at_most(load: loadgen.Load) -> str:
    """Where an endpoint's best rate of the sweep was reached."""
    return f" (maximum, at {load.connections} connections)"


def main(argv: list[str] | None = None) -> int:
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
