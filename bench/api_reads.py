"""Reads at scale: the runs list, run detail, metrics and the dashboard's graph and metrics pages
with N runs in the table, vs GET /health.

    python -m bench.api_reads [--runs 100000] [--requests 500] [--database-url URL]
                              [--redis-url URL] [--reuse] [--rollup-checks 3] [--results PATH]

Fills an empty PostgreSQL schema with set-based SQL (bench/api_reads_data.py: INSERT ... SELECT):
automations, contacts, one trigger event and one run per event, three step rows per run in the
shapes the engine writes (trigger -> contact_update -> send_email; about 5% of runs failed at the
email with an error, the others completed, skipped (unsubscribed) or, among the newest, still
running with a retry pending). Then VACUUM ANALYZE, start the API with uvicorn and time each read
one request at a time: GET /automations/{id}/runs?status=failed (the default page, which for runs
is every run up to the server cap, and limit=20), several statuses at once, a page further down
with `after`, and GET /automations/{id}/runs/{run_id} on random runs. GET /health on the same
server is the baseline. The SQL behind each read is captured and EXPLAIN ANALYZEd into
`details`. Also times `automations db check-rollup`'s comparison of the rollup with a recount of
every run and step, which must find nothing. Prints JSON, then a Markdown table; writes the
result only where `--results PATH` says (bench/results/api_reads.json is the committed record).
`--reuse` keeps the data of an earlier run with as many runs and automations instead of seeding
again.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import Engine, event

from bench import BENCH_DATABASE_URL, BENCH_REDIS_URL, report
from bench.api_reads_data import contact_cursors, failed_cursors, reuse, sample_runs, seed
from bench.dashboard import session_cookie, sign_in
from bench.latency import API_KEY, summarize
from bench.latency_load import Answer, Client
from bench.procs import ROOT, api_env, serve_api
from engine.reports import RUNS_CAP

TARGET_P99_MS = 20.0
# Issue 11's targets at 1,000,000 runs, by the start of the read's name.
TARGETS = {
    "metrics": 50.0,
    "dashboard": 50.0,
    "runs (default page": 40.0,
    "runs ?limit=100": 10.0,
    "runs ?limit=20": 10.0,
    # Not an issue's: a page of contacts is held to a page of runs' target.
    "contacts ?limit=100": 10.0,
}
RESULTS = ROOT / "bench" / "results" / "api_reads.json"
SPANS = {"24 hours": 1, "7 days": 7, "30 days": 30, "90 days": 90}
# Runs the run detail reads open in turn, sampled across the whole table.
DETAIL_RUNS = 4096


def target_of(name: str) -> float:
    return next((ms for start, ms in TARGETS.items() if name.startswith(start)), TARGET_P99_MS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL)
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the table")
    parser.add_argument("--automations", type=int, default=10, help="the runs are spread over")
    parser.add_argument("--contacts", type=int, default=None, help="default: runs / 10")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per read")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per read first")
    parser.add_argument("--no-explain", action="store_true", help="skip EXPLAIN ANALYZE")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the data of an earlier run with as many runs and automations (seeding "
        "1,000,000 runs takes minutes); its windows have moved on by the time since",
    )
    parser.add_argument(
        "--rollup-checks", type=int, default=3, help="timed rollup checks (median kept; 0: none)"
    )
    parser.add_argument(
        "--results", type=Path, help=f"also write the result here, e.g. {RESULTS.relative_to(ROOT)}"
    )


def reads(
    automation_ids: list[str], cursors: list[str], sampled: list[tuple[str, str]]
) -> dict[str, Callable[[int], str]]:
    """Each read as a function of the request number, so some reads vary their target
    (`sampled`: runs to open, as (automation id, run id))."""
    first = automation_ids[0]
    base = f"/automations/{first}/runs"

    def detail(i: int) -> str:
        owner, run_id = sampled[i % len(sampled)]
        return f"/automations/{owner}/runs/{run_id}"

    def metrics(days: int) -> str:
        start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).isoformat()
        granularity = "hour" if days == 1 else "day"
        return f"/automations/{first}/metrics?" + urlencode(
            {"start": start, "granularity": granularity}
        )

    spans = {f"metrics {name}": (lambda i, d=days: metrics(d)) for name, days in SPANS.items()}
    return {
        "GET /health": lambda i: "/health",
        f"runs (default page: up to {RUNS_CAP})": lambda i: base,
        "runs ?limit=100": lambda i: base + "?limit=100",
        "runs ?limit=100&after=<cursor further down>": lambda i: (
            f"{base}?limit=100&after={cursors[i % len(cursors)]}"
        ),
        "runs ?limit=20": lambda i: base + "?limit=20",
        **spans,
        f"runs ?status=failed (default page: up to {RUNS_CAP})": lambda i: base + "?status=failed",
        "runs ?status=failed&limit=20": lambda i: base + "?status=failed&limit=20",
        "runs ?status=failed,skipped,running (default page)": lambda i: (
            base + "?status=failed,skipped,running"
        ),
        "runs ?status=failed,skipped,running&limit=20": lambda i: (
            base + "?status=failed,skipped,running&limit=20"
        ),
        "runs ?status=failed&after=<cursor further down> (default page)": lambda i: (
            f"{base}?status=failed&after={cursors[i % len(cursors)]}"
        ),
        "run detail (random run)": detail,
    }


def contact_reads(cursors: list[str]) -> dict[str, Callable[[int], str]]:
    """The contacts list: its first page of 100, and pages further down."""
    return {
        "contacts ?limit=100": _fixed("/contacts?limit=100"),
        "contacts ?limit=100&after=<cursor further down>": lambda i: (
            f"/contacts?limit=100&after={cursors[i % len(cursors)]}"
        ),
    }


def dashboard_pages(automation_id: str) -> dict[str, Callable[[int], str]]:
    """The dashboard's graph and Metrics tab of the automation over each span."""
    base = f"/dashboard/automations/{automation_id}"
    ranges = {1: "24h", 7: "7d", 30: "30d", 90: "90d"}
    pages: dict[str, Callable[[int], str]] = {}
    for name, days in SPANS.items():
        pages[f"dashboard graph {name}"] = _fixed(f"{base}?days={days}")
        pages[f"dashboard metrics {name}"] = _fixed(f"{base}/metrics?range={ranges[days]}")
    return pages


def _fixed(path: str) -> Callable[[int], str]:
    """A read whose path is the same at every request."""
    return lambda _: path


async def time_reads(
    base_url: str,
    headers: dict[str, str],
    reads: dict[str, Callable[[int], str]],
    requests: int,
    warmup: int,
) -> dict[str, dict[str, Any]]:
    """Each read's round trips, one request at a time, on the bench's own client
    (bench/latency_load.py): the server's time, not a client library's."""
    client = Client(base_url, headers)
    try:
        return {
            name: await time_read(client, path_of, requests, warmup)
            for name, path_of in reads.items()
        }
    finally:
        await client.close()


async def time_read(
    client: Client, path_of: Callable[[int], str], requests: int, warmup: int
) -> dict[str, Any]:
    for i in range(warmup):
        _ok(await client.send(client.request_bytes("GET", path_of(requests + i))))
    took, last = [], b""
    for i in range(requests):
        answer = _ok(await client.send(client.request_bytes("GET", path_of(i))))
        took.append((answer.answered - answer.sent) * 1000)
        last = answer.body
    return {**summarize(took), "items_in_last_answer": items_in(last)}


def _ok(answer: Answer) -> Answer:
    if answer.status != 200:
        raise RuntimeError(f"a read answered {answer.status}: {answer.body[:200]!r}")
    return answer


def items_in(body: bytes) -> int:
    """How many runs or steps a JSON answer holds (0 for a page of HTML)."""
    if not body.startswith(b"{"):
        return 0
    found = json.loads(body)
    return len(found.get("data", found.get("steps", [])))


# --- the SQL behind each read -------------------------------------------------------------------


@contextmanager
def captured_sql(db_engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(db_engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(db_engine, "before_cursor_execute", note)


def explain(
    db_engine: Engine, automation_ids: list[str], cursor: str, opened: tuple[str, str]
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of every SELECT the engine runs for each read, as the API calls it."""
    from engine import metrics, reports
    from engine.db import create_session_factory, transaction
    from engine.graph import Graph
    from engine.store.automations import version_graph

    def first_read_graph(session: Any, version_id: uuid.UUID) -> Graph:
        """The version's graph from the database, as a process's first detail of it reads it."""
        return Graph.from_dict(version_graph(session, version_id) or {}, version_id=version_id)

    key = uuid.UUID(automation_ids[0])
    run_owner, run_id = (uuid.UUID(value) for value in opened)
    ninety = (dt.datetime.now(dt.UTC) - dt.timedelta(days=90)).isoformat()
    cases: dict[str, Callable[[Any], object]] = {
        "runs (default page)": lambda s: reports.list_runs_written(
            s, key, status=None, limit=None, after=None, before=None
        ),
        "runs ?limit=100": lambda s: reports.list_runs_written(
            s, key, status=None, limit=100, after=None, before=None
        ),
        "metrics 90 days": lambda s: metrics.automation_metrics(
            s, key, start=ninety, end=None, granularity="day", now=dt.datetime.now(dt.UTC)
        ),
        "runs ?status=failed (default page)": lambda s: reports.list_runs_written(
            s, key, status="failed", limit=None, after=None, before=None
        ),
        "runs ?status=failed,skipped,running (default page)": lambda s: reports.list_runs_written(
            s, key, status="failed,skipped,running", limit=None, after=None, before=None
        ),
        "runs ?status=failed&after=<cursor>": lambda s: reports.list_runs_written(
            s, key, status="failed", limit=None, after=uuid.UUID(cursor), before=None
        ),
        "run detail": lambda s: reports.get_run(s, run_owner, run_id, graph=first_read_graph),
    }
    sessions = create_session_factory(db_engine)
    plans: dict[str, Any] = {}
    for name, call in cases.items():
        with captured_sql(db_engine) as statements, transaction(sessions) as session:
            call(session)
        plans[name] = [explain_one(db_engine, sql, params) for sql, params in statements]
    return plans


def explain_one(db_engine: Engine, sql: str, params: Any) -> dict[str, Any]:
    raw = db_engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plan = [line[0] for line in cur.fetchall()]
        cur.close()
        raw.rollback()
    finally:
        raw.close()
    return {"sql": " ".join(sql.split()), "plan": plan}


# --- the result ---------------------------------------------------------------------------------


def rows_of(results: dict[str, dict[str, Any]]) -> list[report.Row]:
    health = results["GET /health"]
    out: list[report.Row] = []
    for name, figures in results.items():
        if name == "GET /health":
            continue
        target = target_of(name)
        for q in ("p50", "p99"):
            is_p99 = q == "p99"
            out.append(
                report.row(
                    f"{name}, {q}",
                    figures[q],
                    "ms",
                    baseline=health[q],
                    baseline_label=f"GET /health {q}",
                    target=f"≤ {target:g} ms" if is_p99 else None,
                    met=figures[q] <= target if is_p99 else None,
                )
            )
    return out


def run(args: argparse.Namespace) -> report.Result:
    from engine.db import create_db_engine

    contacts = args.contacts or max(1, args.runs // 10)
    db_engine = create_db_engine(args.database_url)
    try:
        seeded = (args.reuse and reuse(db_engine, args.runs, args.automations)) or seed(
            db_engine, args.runs, args.automations, contacts
        )
        automation_ids = seeded["automation_ids"]
        cursors = failed_cursors(db_engine, automation_ids[0], 100)
        contacts_after = contact_cursors(db_engine, 100)
        sampled = sample_runs(db_engine, DETAIL_RUNS)
        plans = (
            None if args.no_explain else explain(db_engine, automation_ids, cursors[0], sampled[0])
        )
    finally:
        db_engine.dispose()
    checks = time_rollup_checks(args.database_url, args.rollup_checks)
    week = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=6)
    checks_week = time_rollup_checks(args.database_url, args.rollup_checks, since=week)
    env = api_env(args.database_url, args.redis_url, API_KEY, "console://")
    with serve_api(env) as base_url:
        with httpx.Client(base_url=base_url, timeout=60) as signed_in:
            sign_in(signed_in, API_KEY)  # the session's cookie, for the dashboard's pages
            cookie = session_cookie(signed_in)
        bearer = {"Authorization": f"Bearer {API_KEY}"}
        api = reads(automation_ids, cursors, sampled) | contact_reads(contacts_after)
        results = asyncio.run(time_reads(base_url, bearer, api, args.requests, args.warmup))
        pages = dashboard_pages(automation_ids[0])
        results |= asyncio.run(
            time_reads(base_url, {"Cookie": cookie}, pages, args.requests, args.warmup)
        )
    details = {
        "config": {**vars(args), "contacts": contacts},
        "seeding": seeded,
        "latency_ms": results,
        "rollup_check_seconds": checks,
        "rollup_check_last_7_days_seconds": checks_week,
        "plans": plans,
    }
    title = f"Runs list, run detail, metrics and dashboard pages with {args.runs:,} runs"
    rows = (
        rows_of(results) + rollup_rows(checks, args.runs) + rollup_rows(checks_week, args.runs, 7)
    )
    measured = report.result("api_reads", title, rows, details)
    report.write_result(args.results, measured)
    return measured


def time_rollup_checks(database_url: str, times: int, since: dt.date | None = None) -> list[float]:
    """Seconds of each rollup check (what `automations db check-rollup [--since]` runs) on the
    seeded rows; a difference fails the bench, as the seeding counts the rollup as migration
    0005."""
    from engine.rollup_check import check_rollup, describe
    from engine.runtime import create_runtime
    from engine.settings import Settings

    rt = create_runtime(Settings(database_url=database_url, env="test"))
    seconds = []
    try:
        for _ in range(times):
            began = time.perf_counter()
            found = check_rollup(rt, since)
            seconds.append(round(time.perf_counter() - began, 2))
            if found:
                raise RuntimeError(f"the rollup differs from a recount: {describe(found[0])}")
    finally:
        rt.sessions.kw["bind"].dispose()
    return seconds


def rollup_rows(seconds: list[float], runs: int, days: int | None = None) -> list[report.Row]:
    if not seconds:
        return []
    median = sorted(seconds)[len(seconds) // 2]
    scope = "" if days is None else f" (--since: the last {days} of 90 days)"
    name = f"rollup check against a recount of {runs:,} runs{scope}, median"
    return [report.row(name, median, "s")]


def main(argv: list[str] | None = None) -> int:
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
