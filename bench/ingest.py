"""Events accepted per second by POST /events/send and /events/batch, against GET /health.

    python -m bench.ingest [--database-url URL] [--redis-url URL] [--seconds 10] [--workers 1]

Starts the API with uvicorn as an operator would (PostgreSQL and Redis by default), creates one
enabled automation listening for the event so that every accepted event also starts a run, then
drives each endpoint for the same time with the same client concurrency. Prints JSON and a
Markdown table. The ratio to /health on the same server in the same run is the number to trust
(for /events/batch it compares events with requests: how far batching gets past one request).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
import uuid
from typing import Any

import httpx

from bench import report
from bench.procs import api_env, empty_database, serve_api

API_KEY = "re_bench_key_" + uuid.uuid4().hex
TITLE = "Events accepted per second (POST /events/send, /events/batch) vs GET /health"


def prepare(database_url: str) -> None:
    """An empty schema with one enabled automation triggered by `bench.event`."""
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


async def drive(
    client: httpx.AsyncClient, method: str, path: str, body: Any, seconds: float, concurrency: int
) -> tuple[int, float, int]:
    """(requests completed, elapsed seconds, non-2xx answers) for `seconds` of load."""
    deadline = time.perf_counter() + seconds
    done = errors = 0

    async def one_client() -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            payload = body() if callable(body) else body
            answer = await client.request(method, path, json=payload)
            done += 1
            errors += answer.status_code >= 300

    start = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return done, time.perf_counter() - start, errors


def event() -> dict[str, Any]:
    return {"event": "bench.event", "email": f"{uuid.uuid4().hex}@bench.test", "payload": {"n": 1}}


async def measure(base_url: str, seconds: float, concurrency: int, batch: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as client:
        await drive(client, "GET", "/health", None, 1, concurrency)  # warm up
        results = {}
        for name, method, path, body, per_request in (
            ("health", "GET", "/health", None, 1),
            ("events_send", "POST", "/events/send", event, 1),
            (
                "events_batch",
                "POST",
                "/events/batch",
                lambda: [event() for _ in range(batch)],
                batch,
            ),
        ):
            done, elapsed, errors = await drive(client, method, path, body, seconds, concurrency)
            results[name] = {
                "requests_per_s": round(done / elapsed, 1),
                "events_per_s": round(done * per_request / elapsed, 1)
                if name != "health"
                else None,
                "requests": done,
                "errors": errors,
            }
    base = results["health"]["requests_per_s"]
    for name in ("events_send", "events_batch"):
        results[name]["requests_vs_health"] = round(results[name]["requests_per_s"] / base, 3)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1/test")
    parser.add_argument(
        "--redis-url", "--broker-url", dest="redis_url", default="redis://127.0.0.1:6379/0"
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")


def run(args: argparse.Namespace) -> report.Result:
    prepare(args.database_url)
    env = api_env(args.database_url, args.redis_url, API_KEY)
    with serve_api(env, workers=args.workers) as base_url:
        results = asyncio.run(measure(base_url, args.seconds, args.concurrency, args.batch))
    details = {"config": vars(args), **results}
    return report.result("ingest", TITLE, rows_of(results, args.batch), details)


def rows_of(results: dict[str, Any], batch: int) -> list[report.Row]:
    health = results["health"]["requests_per_s"]
    rows = []
    for name, metric, target in (
        ("events_send", "POST /events/send, one event per request", 2000),
        ("events_batch", f"POST /events/batch, {batch} events per request", 10_000),
    ):
        figures = results[name]
        # Refused requests are fast: a rate with errors in it is not a rate of accepted events.
        if figures["errors"]:
            metric += f" ({figures['errors']} non-2xx answers)"
        rows.append(
            report.row(
                metric,
                figures["events_per_s"],
                "events/s",
                baseline=health,
                baseline_label="GET /health requests/s, same server",
                target=f"≥ {target:,} events/s",
                met=figures["events_per_s"] >= target and not figures["errors"],
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
