"""Runs list (filtered by status) and run detail latency with N runs in the table, vs GET /health.

    python -m bench.api_reads [--runs 100000] [--requests 500] [--database-url URL]
                              [--redis-url URL]

Fills an empty PostgreSQL schema with set-based SQL (INSERT ... SELECT from generate_series):
automations, contacts, one trigger event and one run per event, three step rows per run in the
shapes the engine writes (trigger -> contact_update -> send_email; about 5% of runs failed at the
email with an error, the others completed, skipped (unsubscribed) or, among the newest, still
running with a retry pending). Then VACUUM ANALYZE, start the API with uvicorn and time each read
one request at a time: GET /automations/{id}/runs?status=failed (the default page, which for runs
is every run up to the server cap, and limit=20), several statuses at once, a page further down
with `after`, and GET /automations/{id}/runs/{run_id} on random runs. GET /health on the same
server is the baseline. The SQL behind each read is captured and EXPLAIN ANALYZEd into `details`.
Prints JSON, then a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, event, text

from bench import report
from bench.latency import API_KEY, base_env, summarize
from bench.procs import serve_api
from engine.reports import RUNS_CAP

TARGET_P99_MS = 20.0
HISTORY = dt.timedelta(days=30)
# Share of runs still running: only among the newest runs (a retry pending on the email step).
RUNNING_AMONG_NEWEST = 0.05
GRAPH_CONNECTIONS = [{"from": "start", "to": "tag"}, {"from": "tag", "to": "mail"}]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the table")
    parser.add_argument("--automations", type=int, default=10, help="the runs are spread over")
    parser.add_argument("--contacts", type=int, default=None, help="default: runs / 10")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per read")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per read first")
    parser.add_argument("--no-explain", action="store_true", help="skip EXPLAIN ANALYZE")


# --- seeding ------------------------------------------------------------------------------------
#
# Ids are md5 hashes of a kind and a number (uuid-shaped, random-looking like uuid4), so each
# INSERT derives the rows it references from the series number alone, with no join, and Python
# can name any run without asking the database. Statuses come from hashint4(n): deterministic.

BUCKET = "(hashint4(n) & 2147483647) % 1000"  # 0..999, uniform, stable for a given n

# Run status of run number n: 5% failed, 4% skipped, 3% of the newest 5% running, else completed.
RUN_STATUS = f"""CASE
    WHEN {BUCKET} < 50 THEN 'failed'
    WHEN {BUCKET} < 90 THEN 'skipped'
    WHEN {BUCKET} < 120 AND n >= :newest_from THEN 'running'
    ELSE 'completed' END"""

CONTACT_NO = "((n::bigint * 7919) % :contacts)"
AT = "(CAST(:start AS timestamptz) + n * CAST(:step AS interval))"  # run n's creation time

SEED_CONTACTS = """
INSERT INTO contacts (id, email, first_name, last_name, unsubscribed, properties,
                      created_at, updated_at)
SELECT md5('contact-' || c)::uuid, 'c' || c || '@bench.test', 'Contact ' || c, NULL, false,
       '{}'::jsonb, :start, :start
FROM generate_series(0, :contacts - 1) AS c
"""

SEED_EVENTS = f"""
INSERT INTO events (id, name, contact_id, payload, idempotency_key, received_at)
SELECT md5('event-' || n)::uuid, 'user.created', md5('contact-' || {CONTACT_NO})::uuid,
       jsonb_build_object('plan', 'pro', 'n', n), NULL, {AT}
FROM generate_series(0, :runs - 1) AS n
"""  # noqa: S608 - composed of constants, values bound

SEED_RUNS = f"""
INSERT INTO runs (id, automation_id, version_id, contact_id, event_id, status,
                  started_at, completed_at, created_at)
SELECT md5('run-' || n)::uuid,
       (CAST(:automation_ids AS uuid[]))[1 + n % :automations],
       (CAST(:version_ids AS uuid[]))[1 + n % :automations],
       md5('contact-' || {CONTACT_NO})::uuid, md5('event-' || n)::uuid, s.status, {AT},
       CASE WHEN s.status = 'running' THEN NULL
            ELSE {AT} + interval '45 milliseconds' END,
       {AT}
FROM generate_series(0, :runs - 1) AS n
CROSS JOIN LATERAL (SELECT {RUN_STATUS} AS status) AS s
"""  # noqa: S608 - composed of constants, values bound

# Three rows per run, numbered x = 3n + position so that the heap fills in creation order.
SEED_STEPS = f"""
INSERT INTO run_steps (run_id, step_key, step_type, status, skip_reason, branch, wait_event,
                       attempt, due_at, dispatched_at, lease_expires_at, started_at,
                       completed_at, created_at, output, error)
SELECT md5('run-' || n)::uuid, k.key, k.type, k.status,
       CASE WHEN k.status = 'skipped' THEN 'unsubscribed' END,
       CASE WHEN k.status IN ('completed', 'skipped') THEN 'default' END,
       NULL,
       CASE WHEN pos = 0 THEN 0 WHEN k.status = 'pending' THEN 2 ELSE 1 END,
       CASE WHEN k.status = 'pending' THEN r.at + interval '40 seconds'
            WHEN pos > 0 THEN r.at END,
       CASE WHEN pos > 0 AND k.status <> 'pending' THEN r.at END,
       NULL,
       r.at + pos * interval '5 milliseconds',
       CASE WHEN k.status <> 'pending' THEN r.at + pos * interval '15 milliseconds' END,
       r.at,
       CASE pos
           WHEN 0 THEN jsonb_build_object('event_id', md5('event-' || n)::uuid)
           WHEN 1 THEN jsonb_build_object(
               'contact_id', md5('contact-' || {CONTACT_NO})::uuid,
               'updated', '{{"properties": {{"welcomed": true}}}}'::jsonb)
           ELSE CASE k.status
               WHEN 'completed' THEN jsonb_build_object(
                   'to', 'c' || {CONTACT_NO} || '@bench.test',
                   'email_id', md5('email-' || n)::uuid,
                   'template', jsonb_build_object('id', CAST(:template_id AS text),
                                                  'variables', '{{}}'::jsonb))
               WHEN 'skipped' THEN jsonb_build_object('to', 'c' || {CONTACT_NO} || '@bench.test')
           END
       END,
       CASE k.status
           WHEN 'failed' THEN CASE WHEN n % 2 = 0
               THEN '{{"message": "SMTP server refused the message: 550 5.1.1 mailbox unavailable",
                      "code": "smtp_rejected"}}'::jsonb
               ELSE '{{"message": "Sender domain `bench.test` is not verified",
                      "code": "domain_not_verified"}}'::jsonb END
           WHEN 'pending' THEN '{{"message": "SMTP server unavailable: connection refused",
                                  "code": "smtp_unavailable"}}'::jsonb
       END
FROM (SELECT x / 3 AS n, (x % 3)::int AS pos FROM generate_series(0, 3 * :runs - 1) AS x) AS i
CROSS JOIN LATERAL (SELECT {AT} AS at, {RUN_STATUS} AS run_status) AS r
CROSS JOIN LATERAL (
    SELECT (ARRAY['start', 'tag', 'mail'])[pos + 1] AS key,
           (ARRAY['trigger', 'contact_update', 'send_email'])[pos + 1] AS type,
           CASE WHEN pos < 2 THEN 'completed'
                WHEN r.run_status = 'running' THEN 'pending'
                ELSE r.run_status END AS status
) AS k
"""  # noqa: S608 - composed of constants, values bound


def graph_steps(template_id: str) -> list[dict[str, Any]]:
    """The graph every seeded run follows; the step keys the seeding SQL writes."""
    return [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {"key": "tag", "type": "contact_update", "config": {"properties": {"welcomed": True}}},
        {"key": "mail", "type": "send_email", "config": {"template": {"id": template_id}}},
    ]


def hashed_id(kind: str, number: int) -> uuid.UUID:
    """The id the seeding SQL gives row `number` of `kind` (md5(kind-number) as a uuid)."""
    return uuid.UUID(hashlib.md5(f"{kind}-{number}".encode()).hexdigest())  # noqa: S324 - ids


def create_automations(
    db_engine: Engine, count: int, at: dt.datetime
) -> tuple[list[uuid.UUID], list[uuid.UUID], str]:
    """Automations through the engine (validated graphs, versions); their ids and version ids."""
    from engine.db import create_session_factory, transaction
    from engine.lifecycle import create_automation
    from engine.store import content
    from models.enums import DomainStatus, TemplateStatus

    automation_ids: list[uuid.UUID] = []
    version_ids: list[uuid.UUID] = []
    with transaction(create_session_factory(db_engine)) as session:
        content.create_domain(session, name="bench.test", now=at, status=DomainStatus.VERIFIED)
        template = content.create_template(
            session,
            name="welcome",
            now=at,
            status=TemplateStatus.PUBLISHED,
            subject="Welcome",
            sender="Bench <b@bench.test>",
            html="<p>Welcome</p>",
        )
        for number in range(count):
            made = create_automation(
                session,
                name=f"Automation {number}",
                status="enabled",
                steps=graph_steps(str(template.id)),
                connections=GRAPH_CONNECTIONS,
                now=at,
            )
            assert made.current_version_id is not None
            automation_ids.append(made.id)
            version_ids.append(made.current_version_id)
    return automation_ids, version_ids, str(template.id)


def seed(db_engine: Engine, runs: int, automations: int, contacts: int) -> dict[str, Any]:
    """An empty schema filled with `runs` runs; seconds per phase."""
    from engine.db import create_schema, drop_schema

    if db_engine.dialect.name != "postgresql":
        raise SystemExit("bench.api_reads seeds with PostgreSQL's generate_series: use PostgreSQL")
    timings: dict[str, float] = {}
    began = time.perf_counter()
    drop_schema(db_engine)
    create_schema(db_engine)
    now = dt.datetime.now(dt.UTC)
    start = now - HISTORY
    automation_ids, version_ids, template_id = create_automations(
        db_engine, automations, start - dt.timedelta(days=1)
    )
    params = {
        "runs": runs,
        "contacts": contacts,
        "automations": automations,
        "automation_ids": automation_ids,
        "version_ids": version_ids,
        "template_id": template_id,
        "start": start,
        "step": dt.timedelta(seconds=HISTORY.total_seconds() / runs),
        "newest_from": int(runs * (1 - RUNNING_AMONG_NEWEST)),
    }
    timings["schema"] = round(time.perf_counter() - began, 1)
    timings.update(insert_rows(db_engine, params))
    phase = time.perf_counter()
    # Autovacuum would have visited an insert-only table by now: visibility map and statistics.
    with db_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("contacts", "events", "runs", "run_steps"):
            conn.execute(text(f"VACUUM ANALYZE {table}"))
    timings["vacuum_analyze"] = round(time.perf_counter() - phase, 1)
    timings["total"] = round(time.perf_counter() - began, 1)
    return {
        "seconds": timings,
        "automation_ids": [str(a) for a in automation_ids],
        "counts": table_counts(db_engine),
    }


def insert_rows(db_engine: Engine, params: dict[str, Any]) -> dict[str, float]:
    """Contacts, events, runs and steps in one transaction; seconds per table."""
    timings: dict[str, float] = {}
    with db_engine.begin() as conn:
        deferred = drop_secondary_indexes(conn)
        skip_foreign_key_checks(conn)
        for name, sql in (
            ("contacts", SEED_CONTACTS),
            ("events", SEED_EVENTS),
            ("runs", SEED_RUNS),
            ("run_steps", SEED_STEPS),
        ):
            phase = time.perf_counter()
            used = {key: value for key, value in params.items() if f":{key}" in sql}
            conn.execute(text(sql), used)
            timings[name] = round(time.perf_counter() - phase, 1)
        phase = time.perf_counter()
        conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        for definition in deferred:
            conn.execute(text(definition))
        timings["indexes"] = round(time.perf_counter() - phase, 1)
    return timings


# Two seeding shortcuts that leave the same tables behind: secondary indexes are built once at
# the end (one sorted build instead of a million random inserts each), and foreign keys are not
# checked row by row, since every row references rows inserted just before it by construction.


def drop_secondary_indexes(conn: Connection) -> list[str]:
    """Drop the indexes of the big tables that back no constraint; their CREATE statements."""
    found = conn.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename IN ('events', 'runs', 'run_steps') "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
    ).all()
    for name, _ in found:
        conn.execute(text(f'DROP INDEX "{name}"'))
    return [definition for _, definition in found]


def skip_foreign_key_checks(conn: Connection) -> None:
    """Foreign-key triggers off for this transaction, if we may (it takes a superuser)."""
    if conn.scalar(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")):
        conn.execute(text("SET LOCAL session_replication_role = replica"))


def table_counts(db_engine: Engine) -> dict[str, Any]:
    with db_engine.connect() as conn:
        statuses: dict[str, int] = dict(
            conn.execute(text("SELECT status, count(*) FROM runs GROUP BY 1")).all()
        )
        sizes = {
            table: conn.scalar(text(f"SELECT pg_size_pretty(pg_total_relation_size('{table}'))"))
            for table in ("runs", "run_steps", "events")
        }
        steps = conn.scalar(text("SELECT count(*) FROM run_steps"))
    return {"runs_by_status": statuses, "run_steps": steps, "sizes": sizes}


# --- what is timed ------------------------------------------------------------------------------


def failed_cursors(db_engine: Engine, automation_id: str, count: int) -> list[str]:
    """Failed runs of the automation spread over its whole list, as `after` cursors."""
    with db_engine.connect() as conn:
        ids = conn.scalars(
            text(
                "SELECT id FROM runs WHERE automation_id = :a AND status = 'failed' "
                "ORDER BY created_at DESC, id DESC"
            ),
            {"a": automation_id},
        ).all()
    rng = random.Random(11)
    # Skip the newest page so that each cursor is really further down.
    deeper = ids[RUNS_CAP:] or ids
    return [str(value) for value in rng.sample(deeper, min(count, len(deeper)))]


def reads(
    automation_ids: list[str], cursors: list[str], runs: int
) -> dict[str, Callable[[int], str]]:
    """Each read as a function of the request number, so some reads vary their target."""
    first = automation_ids[0]
    base = f"/automations/{first}/runs"
    rng = random.Random(5)
    numbers = [rng.randrange(runs) for _ in range(4096)]

    def detail(i: int) -> str:
        n = numbers[i % len(numbers)]
        return f"/automations/{automation_ids[n % len(automation_ids)]}/runs/{hashed_id('run', n)}"

    return {
        "GET /health": lambda i: "/health",
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


def time_read(
    client: httpx.Client, path_of: Callable[[int], str], requests: int, warmup: int
) -> dict[str, Any]:
    for i in range(warmup):
        client.get(path_of(requests + i)).raise_for_status()
    took, items = [], 0
    for i in range(requests):
        began = time.perf_counter()
        answer = client.get(path_of(i))
        took.append((time.perf_counter() - began) * 1000)
        answer.raise_for_status()
        body = answer.json()
        items = len(body.get("data", body.get("steps", [])))
    return {**summarize(took), "items_in_last_answer": items}


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
    db_engine: Engine, automation_ids: list[str], cursor: str, run_number: int
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of every SELECT the engine runs for each read, as the API calls it."""
    from engine import reports
    from engine.db import create_session_factory, transaction

    key = uuid.UUID(automation_ids[0])
    run_owner = uuid.UUID(automation_ids[run_number % len(automation_ids)])
    cases: dict[str, Callable[[Any], object]] = {
        "runs ?status=failed (default page)": lambda s: reports.list_runs(
            s, key, status="failed", limit=None, after=None, before=None
        ),
        "runs ?status=failed,skipped,running (default page)": lambda s: reports.list_runs(
            s, key, status="failed,skipped,running", limit=None, after=None, before=None
        ),
        "runs ?status=failed&after=<cursor>": lambda s: reports.list_runs(
            s, key, status="failed", limit=None, after=uuid.UUID(cursor), before=None
        ),
        "run detail": lambda s: reports.get_run(s, run_owner, hashed_id("run", run_number)),
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
        for q in ("p50", "p99"):
            is_p99 = q == "p99"
            out.append(
                report.row(
                    f"{name}, {q}",
                    figures[q],
                    "ms",
                    baseline=health[q],
                    baseline_label=f"GET /health {q}",
                    target=f"≤ {TARGET_P99_MS:g} ms" if is_p99 else None,
                    met=figures[q] <= TARGET_P99_MS if is_p99 else None,
                )
            )
    return out


def run(args: argparse.Namespace) -> report.Result:
    from engine.db import create_db_engine

    contacts = args.contacts or max(1, args.runs // 10)
    db_engine = create_db_engine(args.database_url)
    try:
        seeded = seed(db_engine, args.runs, args.automations, contacts)
        automation_ids = seeded["automation_ids"]
        cursors = failed_cursors(db_engine, automation_ids[0], 100)
        plans = (
            None
            if args.no_explain
            else explain(db_engine, automation_ids, cursors[0], args.runs // 2)
        )
    finally:
        db_engine.dispose()
    env = base_env(args.database_url, args.redis_url, "console://")
    results: dict[str, dict[str, Any]] = {}
    with (
        serve_api(env) as base_url,
        httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
        ) as client,
    ):
        for name, path_of in reads(automation_ids, cursors, args.runs).items():
            results[name] = time_read(client, path_of, args.requests, args.warmup)
    details = {
        "config": {**vars(args), "contacts": contacts},
        "seeding": seeded,
        "latency_ms": results,
        "plans": plans,
    }
    title = f"Runs list and run detail with {args.runs:,} runs in the table"
    return report.result("api_reads", title, rows_of(results), details)


def main(argv: list[str] | None = None) -> int:
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
