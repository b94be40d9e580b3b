"""Simulation: a 30-day, 10-step automation played on virtual time, against 30 days of wall clock.

    python -m bench.simulate [--simulations 300] [--database-url URL] [--redis-url URL]

Seeds a verified domain, three published templates, a segment, a contact and the automation
(a welcome email, 3 days' delay, a condition, tips, a 7-day wait that times out, a contact
update, 20 days' delay, a segment, a last email: 30 days of a real run). Simulates it
`--simulations` times in this process (the engine function the API calls), then as many times
over HTTP (`POST /automations/simulate` on uvicorn, one request at a time). Reports p50 and p99
in milliseconds against the 30 days a real run takes, and checks that nothing was written to
the database nor queued on the broker.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from typing import Any

import httpx
import redis
from sqlalchemy import func, select

from bench import BENCH_DATABASE_URL, BENCH_REDIS_URL, report
from bench.latency import summarize
from bench.procs import api_env, empty_database, serve_api
from engine.clock import SystemClock
from engine.db import create_db_engine, create_session_factory, transaction
from engine.durations import format_duration
from engine.lifecycle import create_automation
from engine.runtime import create_runtime
from engine.scenario import parse_scenario
from engine.settings import Settings
from engine.simulation import simulate
from engine.store import contacts as contact_store
from engine.store import content as content_store
from engine.store import segments as segment_store
from models.enums import DomainStatus, TemplateStatus
from models.tables import Base

TITLE = "Simulation of a 30-day, 10-step automation, against its 30 days of wall clock"
API_KEY = "re_bench_simulate_0123456789abcdef"
TARGET_P99_MS = 100.0
THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000.0
QUEUE = "automations"


def _email(key: str, alias: str) -> dict[str, Any]:
    variables = {"FIRST_NAME": {"var": "contact.first_name"}, "PLAN": {"var": "event.plan"}}
    return {
        "key": key,
        "type": "send_email",
        "config": {"template": {"alias": alias, "variables": variables}},
    }


def journey(segment_id: str) -> dict[str, Any]:
    """Ten steps, 30 days on the path a pro contact who never pays takes."""
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        _email("welcome", "welcome"),
        {"key": "wait_3_days", "type": "delay", "config": {"duration": "3 days"}},
        {
            "key": "is_pro",
            "type": "condition",
            "config": {"rule": {"field": "event.plan", "operator": "eq", "value": "pro"}},
        },
        _email("tips", "tips"),
        {
            "key": "await_paid",
            "type": "wait_for_event",
            "config": {"event_name": "user.paid", "timeout": "7 days"},
        },
        {"key": "mark", "type": "contact_update", "config": {"properties": {"paid": False}}},
        {"key": "wait_20_days", "type": "delay", "config": {"duration": "20 days"}},
        {"key": "join", "type": "add_to_segment", "config": {"segment_id": segment_id}},
        _email("last_call", "last-call"),
    ]
    branch = {"is_pro": "condition_met", "await_paid": "timeout"}
    connections = [
        {"from": a["key"], "to": b["key"], "type": branch.get(a["key"], "default")}
        for a, b in itertools.pairwise(steps)
    ]
    return {"steps": steps, "connections": connections}


def prepare(database_url: str) -> tuple[str, str]:
    """The catalogue, a contact and the automation (disabled); (automation id, contact id)."""
    with empty_database(database_url) as session:
        now = SystemClock().now()
        content_store.create_domain(
            session, name="example.com", now=now, status=DomainStatus.VERIFIED
        )
        for alias, subject in (
            ("welcome", "Welcome, {{{FIRST_NAME}}}!"),
            ("tips", "Three tips for {{{PLAN}}} users"),
            ("last-call", "{{{FIRST_NAME}}}, one last thing"),
        ):
            content_store.create_template(
                session,
                name=alias,
                alias=alias,
                status=TemplateStatus.PUBLISHED,
                subject=subject,
                sender="Acme <hello@example.com>",
                html="<p>Hi {{{FIRST_NAME}}}, you are on {{{PLAN}}}.</p>"
                '<a href="{{{RESEND_UNSUBSCRIBE_URL}}}">Unsubscribe</a>',
                text_body="Hi {{{FIRST_NAME}}}, you are on {{{PLAN}}}.",
                variables=[{"key": "FIRST_NAME", "type": "string", "fallback_value": "there"}],
                now=now,
            )
        segment = segment_store.create_segment(session, name="Engaged", now=now)
        contact = contact_store.create_contact(
            session, email="ada@example.com", first_name="Ada", now=now
        )
        automation = create_automation(
            session, name="30 days", status="disabled", now=now, **journey(str(segment.id))
        )
        return str(automation.id), str(contact.id)


def request_body(automation_id: str, contact_id: str) -> dict[str, Any]:
    return {
        "automation_id": automation_id,
        "contact": {"id": contact_id},
        "event": {"name": "user.created", "payload": {"plan": "pro"}},
    }


def in_process(database_url: str, body: dict[str, Any], count: int) -> dict[str, Any]:
    """Milliseconds per simulation through the engine function, and the last answer."""
    rt = create_runtime(Settings(database_url=database_url), transport=None)
    took, cpu, last = [], [], None
    try:
        for n in range(count + 5):
            began, began_cpu = time.perf_counter(), time.process_time()
            last = simulate(rt, parse_scenario(body))
            if n >= 5:  # the first ones fill caches: compiled statements, the empty schema
                took.append((time.perf_counter() - began) * 1000)
                cpu.append((time.process_time() - began_cpu) * 1000)
    finally:
        rt.sessions.kw["bind"].dispose()
    assert last is not None
    answer = {
        "status": last.status,
        "duration": format_duration(last.duration),
        "steps": len(last.steps),
        "emails": [email.subject for email in last.emails],
    }
    # CPU time of this process only: the database's share of the reads is in the wall time.
    return {**summarize(took), "cpu_ms": summarize(cpu), "answer": answer}


def over_http(base_url: str, body: dict[str, Any], count: int) -> dict[str, Any]:
    """Milliseconds per POST /automations/simulate, one request at a time."""
    took = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for n in range(count + 5):
            began = time.perf_counter()
            answer = client.post("/automations/simulate", json=body)
            elapsed = (time.perf_counter() - began) * 1000
            answer.raise_for_status()
            if n >= 5:
                took.append(elapsed)
    return summarize(took)


def footprint(database_url: str, redis_url: str) -> dict[str, Any]:
    """Rows per table and the broker queue's length: what a simulation must leave alone."""
    db_engine = create_db_engine(database_url)
    try:
        with transaction(create_session_factory(db_engine)) as session:
            rows = {
                table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
                for table in Base.metadata.sorted_tables
            }
    finally:
        db_engine.dispose()
    return {"rows": rows, "queue": int(redis.Redis.from_url(redis_url).llen(QUEUE))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    parser.add_argument("--redis-url", "--broker-url", dest="redis_url", default=BENCH_REDIS_URL)
    parser.add_argument("--simulations", type=int, default=300)


def run(args: argparse.Namespace) -> report.Result:
    automation_id, contact_id = prepare(args.database_url)
    body = request_body(automation_id, contact_id)
    before = footprint(args.database_url, args.redis_url)
    engine_figures = in_process(args.database_url, body, args.simulations)
    env = api_env(args.database_url, args.redis_url, API_KEY)
    with serve_api(env) as base_url:
        http_figures = over_http(base_url, body, args.simulations)
    after = footprint(args.database_url, args.redis_url)
    if after != before:
        raise AssertionError(f"a simulation changed the database or the queue: {before} {after}")
    results = {"in_process": engine_figures, "http": http_figures, "unchanged": before}
    details = {"config": vars(args), **results}
    return report.result("simulate", TITLE, rows_of(engine_figures, http_figures), details)


def rows_of(engine_figures: dict[str, Any], http_figures: dict[str, Any]) -> list[report.Row]:
    rows = []
    measured = (("in process", engine_figures), ("POST /automations/simulate", http_figures))
    for label, figures in measured:
        for q in ("p50", "p99"):
            is_p99 = q == "p99"
            rows.append(
                report.row(
                    f"30-day 10-step simulation, {label}, {q}",
                    figures[q],
                    "ms",
                    baseline=THIRTY_DAYS_MS,
                    baseline_label="a real run: 30 days of wall clock",
                    target=f"≤ {TARGET_P99_MS:g} ms" if is_p99 else None,
                    met=figures[q] <= TARGET_P99_MS if is_p99 else None,
                )
            )
    rows.append(
        report.row(
            "30-day 10-step simulation, in process, CPU time p50",
            engine_figures["cpu_ms"]["p50"],
            "ms",
            baseline=THIRTY_DAYS_MS,
            baseline_label="a real run: 30 days of wall clock",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
