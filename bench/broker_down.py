"""The front door with its broker down: events accepted per second, and GET /health meanwhile.

    python -m bench.broker_down [--duration 5] [--connections 8] [--database-url URL]

Starts the API as bench.ingest does (production settings, one enabled automation, a uvicorn
worker process per core), but with a broker URL where nothing listens. After a warm-up of
`POST /events/send` (WARM_SECONDS: each process's first send waits out the broker's connection
retries, about 6 s, and its events with it; not measured), drives `GET /health`,
then `POST /events/send` and `POST /events/batch` (10 events per request), with wrk; while the
events go in, a thread asks `GET /health` every half second. Each accepted event is committed
with its run, and its step message is left to the sweeper (engine/after_commit.py: the API
stops sending once a send has failed).
The baseline is `GET /health` on the same server in the same run; `bench.ingest` measures the
same endpoints with the broker up. Prints JSON and a table.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from typing import Any

import httpx

from bench import BENCH_DATABASE_URL, loadgen, report
from bench.ingest import API_KEY, prepare, server_env
from bench.procs import free_port, serve_api

TITLE = "Events accepted with the broker down vs GET /health, same server, same run"
# Longer than the broker's connection retries, which the first send of each process waits out.
WARM_SECONDS = 10
BATCH = 10
PROBE_EVERY = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    parser.add_argument("--duration", type=float, default=5, help="s per wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes")


class HealthProbe:
    """GET /health every PROBE_EVERY seconds until stopped: each answer's time, or its error."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seconds: list[float] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                code = httpx.get(self.url, timeout=5).status_code
            except httpx.HTTPError as error:
                self.failed.append(type(error).__name__)
            else:
                if code != 200:
                    self.failed.append(str(code))
            self.seconds.append(time.monotonic() - started)
            self._stop.wait(PROBE_EVERY)


def run(args: argparse.Namespace) -> report.Result:
    loadgen.wrk_binary()
    prepare(args.database_url)
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    env = server_env(argparse.Namespace(database_url=args.database_url, redis_url=nowhere))
    tag = uuid.uuid4().hex[:8]

    def fire(url: str, mode: str, seconds: float = args.duration, callers: int = 0) -> loadgen.Load:
        shot = loadgen.Shot(url, mode, seconds, callers or args.connections, batch=BATCH)
        return loadgen.fire(shot, api_key=API_KEY, run_id=tag)

    with serve_api(env, workers=args.api_workers) as base_url:
        # Each process's first send fails: enough connections that every process gets some.
        fire(base_url + "/events/send", "send", WARM_SECONDS, callers=16 * args.api_workers)
        health = fire(base_url + "/health", "health")
        with HealthProbe(base_url + "/health") as probe:
            send = fire(base_url + "/events/send", "send")
            batch = fire(base_url + "/events/batch", "batch")
    return report.result(
        "broker_down",
        TITLE,
        rows_of(health, send, batch, probe),
        details(args, health, send, batch, probe),
    )


def rows_of(
    health: loadgen.Load, send: loadgen.Load, batch: loadgen.Load, probe: HealthProbe
) -> list[report.Row]:
    def accepted(metric: str, load: loadgen.Load, events_per_request: int) -> report.Row:
        return report.row(
            metric,
            round(load.per_second * events_per_request),
            "events/s",
            baseline=health.per_second,
            baseline_label="GET /health requests/s",
            target="> 0, no errors",
            met=load.per_second > 0 and load.errors == 0,
        )

    slowest = max(probe.seconds, default=0.0) * 1000
    return [
        report.row("GET /health, broker down", round(health.per_second), "requests/s"),
        accepted("POST /events/send, broker down", send, 1),
        accepted(f"POST /events/batch ({BATCH} per request), broker down", batch, BATCH),
        report.row(
            "GET /health during the event runs, slowest answer",
            round(slowest, 1),
            "ms",
            target="every probe answered 200",
            met=not probe.failed,
        ),
    ]


def details(
    args: argparse.Namespace,
    health: loadgen.Load,
    send: loadgen.Load,
    batch: loadgen.Load,
    probe: HealthProbe,
) -> dict[str, Any]:
    return {
        "config": vars(args),
        "http": {name: vars(load) for name, load in (("health", health), ("send", send))}
        | {"batch": vars(batch)},
        "health_probes": {"answered": len(probe.seconds), "failed": probe.failed},
    }


def main(argv: list[str] | None = None) -> int:
    measured = report.standalone(__doc__, add_arguments, run, argv)
    return 0 if all(row["met"] is not False for row in measured["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
