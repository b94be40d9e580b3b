"""Dashboard page latency with 100,000 runs in the database, against GET /health.

    python -m bench.dashboard [--database-url URL] [--runs 100000] [--requests 50]

Fills an empty schema with a few automations and their runs (bench/dashboard_data.py), starts the
API with uvicorn as an operator would, signs in through the dashboard's own form and times every
page one request at a time, /health included. Prints JSON and a Markdown table of p50/p99 per page.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import time
import uuid
from typing import Any

import httpx

from bench import BENCH_DATABASE_URL, BENCH_REDIS_URL, report
from bench.dashboard_data import fill
from bench.latency_load import Client
from bench.procs import api_env, serve_api

API_KEY = "re_bench_key_" + uuid.uuid4().hex
TITLE = "Dashboard pages, p50 of one request at a time, vs GET /health"


def sign_in(client: httpx.Client, api_key: str = API_KEY) -> None:
    """Through the dashboard's own form: the anonymous session's CSRF token, then the key."""
    page = client.get("/dashboard/login").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/dashboard/login", data={"csrf_token": token, "api_key": api_key})
    assert answer.status_code == 303, answer.text


def session_cookie(client: httpx.Client) -> str:
    """The Cookie header that carries the client's session to the bench's own client."""
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


async def time_page(client: Client, path: str, requests: int) -> dict[str, Any]:
    """p50, p99 and mean in milliseconds for one page, one request at a time, on the bench's
    own client (bench/latency_load.py): the server's time, not a client library's."""
    request = client.request_bytes("GET", path)
    for _ in range(3):  # warm up: connections, caches, plans
        await client.send(request)
    took, statuses = [], set()
    for _ in range(requests):
        answer = await client.send(request)
        took.append((answer.answered - answer.sent) * 1000)
        statuses.add(answer.status)
    took.sort()
    return {
        "path": path,
        "p50_ms": round(statistics.median(took), 1),
        "p99_ms": round(took[min(len(took) - 1, int(len(took) * 0.99))], 1),
        "mean_ms": round(statistics.fmean(took), 1),
        "statuses": sorted(statuses),
    }


def time_pages(base_url: str, pages: dict[str, str], requests: int) -> dict[str, Any]:
    """Every page timed; the sign-in page in an anonymous session, the others signed in. The
    sessions are made through the form with httpx, then carried as a cookie."""
    with httpx.Client(base_url=base_url, timeout=60) as visitor:
        visitor.get("/dashboard/login").raise_for_status()
        anonymous = session_cookie(visitor)
    with httpx.Client(base_url=base_url, timeout=60) as browser:
        sign_in(browser)
        signed_in = session_cookie(browser)
    return asyncio.run(_time_pages(base_url, pages, requests, anonymous, signed_in))


async def _time_pages(
    base_url: str, pages: dict[str, str], requests: int, anonymous: str, signed_in: str
) -> dict[str, Any]:
    visitor, client = (
        Client(base_url, {"Cookie": anonymous}),
        Client(base_url, {"Cookie": signed_in}),
    )
    try:
        results: dict[str, Any] = {
            "health": await time_page(visitor, "/health", requests),
            "sign-in page": await time_page(visitor, "/dashboard/login", requests),
        }
        for name, path in pages.items():
            results[name] = await time_page(client, path, requests)
        return results
    finally:
        await visitor.close()
        await client.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", default=BENCH_DATABASE_URL.replace("/bench", "/bench_dashboard")
    )
    parser.add_argument("--redis-url", "--broker-url", dest="redis_url", default=BENCH_REDIS_URL)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)


def pages_of(sample: dict[str, Any], now: dt.datetime) -> dict[str, str]:
    """The pages timed, by name, on the busiest automation and one of its failed runs."""
    base = f"/dashboard/automations/{sample['busiest']}"
    automation_id, run_id = sample["failed_run"]
    month = (now.date() - dt.timedelta(days=29)).isoformat()
    return {
        "automations list": "/dashboard/",
        "graph (24 hours, the default)": base,
        "graph (7 days)": base + "?days=7",
        "graph (30 days)": base + "?days=30",
        "runs": base + "/runs",
        "runs, failed": base + "/runs?status=failed",
        "runs, an older page": f"{base}/runs?after={run_id}",
        "runs, running+cancelled": base + "/runs?status=running&status=cancelled",
        "metrics (24 hours, the default)": base + "/metrics",
        "metrics (7 days)": base + "/metrics?range=7d",
        "metrics (30 days)": base + "/metrics?range=30d",
        "metrics (typed dates, 30 days hourly)": f"{base}/metrics?start={month}"
        f"&end={now.date().isoformat()}&granularity=hour",
        "run page": f"/dashboard/automations/{automation_id}/runs/{run_id}",
    }


def run(args: argparse.Namespace) -> report.Result:
    now = dt.datetime.now(dt.UTC)
    began = time.perf_counter()
    sample = fill(args.database_url, args.runs, now)
    fill_seconds = round(time.perf_counter() - began, 1)
    env = api_env(args.database_url, args.redis_url, API_KEY)
    with serve_api(env) as base_url:
        results = time_pages(base_url, pages_of(sample, now), args.requests)
    config = {**vars(args), "fill_seconds": fill_seconds}
    return report.result(
        "dashboard", TITLE, rows_of(results, args.runs), {"config": config, "results": results}
    )


def rows_of(results: dict[str, Any], runs: int) -> list[report.Row]:
    """p50 per page (p99 and the mean stay in the details): one row per page keeps it legible."""
    health = results["health"]["p50_ms"]
    rows = []
    for name, figures in results.items():
        if name == "health":
            continue
        # A fast error page is not a fast page: say so where the figure is read.
        failed = [status for status in figures["statuses"] if status >= 400]
        note = f" (HTTP {', '.join(map(str, failed))}!)" if failed else ""
        rows.append(
            report.row(
                f"{name}, {runs:,} runs{note}",
                figures["p50_ms"],
                "ms",
                baseline=health,
                baseline_label="GET /health p50",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
