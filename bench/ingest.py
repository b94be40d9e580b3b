"""Events accepted per second by POST /events/send and /events/batch, against GET /health.

    python -m bench.ingest [--database-url URL] [--broker-url URL] [--seconds 10] [--workers 1]

Starts the API with uvicorn as an operator would (PostgreSQL and Redis by default), creates one
enabled automation listening for the event so that every accepted event also starts a run, then
drives each endpoint for the same time with the same client concurrency. Prints JSON and a
Markdown table. The ratio to /health on the same server in the same run is the number to trust.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "re_bench_key_" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(database_url: str) -> None:
    """An empty schema with one enabled automation triggered by `bench.event`."""
    from engine.db import (
        create_db_engine,
        create_schema,
        create_session_factory,
        drop_schema,
        transaction,
    )
    from engine.lifecycle import create_automation

    db_engine = create_db_engine(database_url)
    drop_schema(db_engine)
    create_schema(db_engine)
    import datetime as dt

    with transaction(create_session_factory(db_engine)) as session:
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
    db_engine.dispose()


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


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1/test")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()

    prepare(args.database_url)
    port = free_port()
    env = {
        **os.environ,
        "AUTOMATIONS_DATABASE_URL": args.database_url,
        "AUTOMATIONS_BROKER_URL": args.broker_url,
        "AUTOMATIONS_API_KEY": API_KEY,
        "AUTOMATIONS_EMAIL_TRANSPORT_URL": "console://",
    }
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "api.asgi:create",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(base_url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        results = asyncio.run(measure(base_url, args.seconds, args.concurrency, args.batch))
    finally:
        server.terminate()
        server.wait(timeout=10)
    report = {"machine": machine(), "config": vars(args), "results": results}
    print(json.dumps(report, indent=2))
    print("\n| endpoint | requests/s | events/s | vs /health (requests) | errors |")
    print("|---|---|---|---|---|")
    for name, row in results.items():
        print(
            f"| {name} | {row['requests_per_s']} | {row['events_per_s'] or '-'} "
            f"| {row.get('requests_vs_health', 1.0)} | {row['errors']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
