"""The data bench/api_reads.py reads: N runs seeded with set-based SQL on PostgreSQL.

Automations, contacts, one trigger event and one run per event over the last 90 days, three
step rows per run in the shapes the engine writes (trigger -> contact_update -> send_email; about
5% of runs failed at the email with an error, the others completed, skipped or, among the newest,
still running), run times spread exponentially around 90 s. The hourly rollup is then counted
from those rows, set-based, as migration 0005 does, and (the worst case for its readers) every
hour's run and step counters are spread over every shard.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from typing import Any

from sqlalchemy import Connection, Engine, text

from engine.reports import RUNS_CAP
from models.tables import Base

HISTORY = dt.timedelta(days=90)
# Share of runs still running: only among the newest runs (a retry pending on the email step).
RUNNING_AMONG_NEWEST = 0.05
GRAPH_CONNECTIONS = [{"from": "start", "to": "tag"}, {"from": "tag", "to": "mail"}]


# --- seeding ------------------------------------------------------------------------------------
#
# Ids are version 7 UUIDs as the engine makes them (models/ids.py): the row's creation time in
# milliseconds, then md5 of a kind and a number in place of the random bits. So the indexes on
# ids grow in time order as a real deployment's do, and each INSERT derives the rows it
# references from the series number alone, with no join. Statuses come from hashint4(n):
# deterministic.


def v7(hashed: str, at: str) -> str:
    """SQL for the version 7 UUID of time `at` (an SQL timestamptz) whose other bits are
    md5(`hashed`), with the version (0111) and variant (10) bits set as new_id() sets them."""
    millis = f"substring(int8send(floor(extract(epoch FROM {at}) * 1000)::bigint) FROM 3)"
    raw = f"overlay(decode(md5({hashed}), 'hex') placing {millis} FROM 1 FOR 6)"
    # set_bit counts bits from the right of each byte: 52 to 55 are byte 6's high nibble (the
    # version), 70 and 71 byte 8's two high bits (the variant).
    for bit, value in ((52, 1), (53, 1), (54, 1), (55, 0), (70, 0), (71, 1)):
        raw = f"set_bit({raw}, {bit}, {value})"
    return f"encode({raw}, 'hex')::uuid"


BUCKET = "(hashint4(n) & 2147483647) % 1000"  # 0..999, uniform, stable for a given n

# Run status of run number n: 5% failed, 4% skipped, 3% of the newest 5% running, else completed.
RUN_STATUS = f"""CASE
    WHEN {BUCKET} < 50 THEN 'failed'
    WHEN {BUCKET} < 90 THEN 'skipped'
    WHEN {BUCKET} < 120 AND n >= :newest_from THEN 'running'
    ELSE 'completed' END"""

CONTACT_NO = "((n::bigint * 7919) % :contacts)"
START = "CAST(:start AS timestamptz)"  # the first run's creation time
AT = f"({START} + n * CAST(:step AS interval))"  # run n's creation time


def contact_at(number: str) -> str:
    """SQL for the creation time of contact `number`: the contacts arrive one after another
    over the hour before the first run, so that the contacts list's (created_at, id) order is
    the order they were stored in, as in a deployment (one time for all of them made that order
    the ids' hash order, and each page past a cursor read as many scattered heap pages as it
    has rows)."""
    spacing = "(interval '1 hour' / CAST(:contacts AS double precision))"
    return f"({START} - (CAST(:contacts AS bigint) - {number}) * {spacing})"


CONTACT_ID = v7(f"'contact-' || {CONTACT_NO}", contact_at(CONTACT_NO))  # run n's contact
# How long run n took: exponential, mean 90 s, from a second hash of n (whole milliseconds).
TOOK = (
    "(interval '1 millisecond' * round(-ln(((hashint4(n + 7919) & 65535) + 1) / 65537.0) * 90000))"
)

SEED_CONTACTS = f"""
INSERT INTO contacts (id, email, first_name, last_name, unsubscribed, properties,
                      created_at, updated_at)
SELECT {v7("'contact-' || c", contact_at("c"))}, 'c' || c || '@bench.test', 'Contact ' || c,
       NULL, false, '{{}}'::jsonb, {contact_at("c")}, {contact_at("c")}
FROM generate_series(0, :contacts - 1) AS c
"""  # noqa: S608 - composed of constants, values bound

SEED_EVENTS = f"""
INSERT INTO events (id, name, contact_id, payload, idempotency_key, received_at)
SELECT {v7("'event-' || n", AT)}, 'user.created', {CONTACT_ID},
       jsonb_build_object('plan', 'pro', 'n', n), NULL, {AT}
FROM generate_series(0, :runs - 1) AS n
"""  # noqa: S608 - composed of constants, values bound

SEED_RUNS = f"""
INSERT INTO runs (id, automation_id, version_id, contact_id, event_id, status,
                  started_at, completed_at, created_at, replay_of, last_retried_at)
SELECT {v7("'run-' || n", AT)},
       (CAST(:automation_ids AS uuid[]))[1 + n % :automations],
       (CAST(:version_ids AS uuid[]))[1 + n % :automations],
       {CONTACT_ID}, {v7("'event-' || n", AT)}, s.status, {AT},
       CASE WHEN s.status = 'running' THEN NULL
            ELSE {AT} + {TOOK} END,
       {AT}, NULL, NULL
FROM generate_series(0, :runs - 1) AS n
CROSS JOIN LATERAL (SELECT {RUN_STATUS} AS status) AS s
"""  # noqa: S608 - composed of constants, values bound

# Three rows per run, numbered x = 3n + position so that the heap fills in creation order.
SEED_STEPS = f"""
INSERT INTO run_steps (run_id, step_key, step_type, status, skip_reason, branch, wait_event,
                       attempt, due_at, dispatched_at, lease_expires_at, started_at,
                       completed_at, created_at, output, error, claimed_at, lost_attempt)
SELECT {v7("'run-' || n", "r.at")}, k.key, k.type, k.status,
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
           WHEN 0 THEN jsonb_build_object('event_id', {v7("'event-' || n", "r.at")})
           WHEN 1 THEN jsonb_build_object(
               'contact_id', {CONTACT_ID},
               'updated', '{{"properties": {{"welcomed": true}}}}'::jsonb)
           ELSE CASE k.status
               WHEN 'completed' THEN jsonb_build_object(
                   'to', 'c' || {CONTACT_NO} || '@bench.test',
                   'email_id', {v7("'email-' || n", "r.at")},
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
       END,
       CASE WHEN pos > 0 AND k.status <> 'pending' THEN r.at + pos * interval '5 milliseconds' END,
       NULL
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


def sample_runs(db_engine: Engine, count: int) -> list[tuple[str, str]]:
    """About `count` runs from all over the table, the same ones for the same rows: each as
    (automation id, run id), in a random order."""
    with db_engine.connect() as conn:
        total = conn.scalar(text("SELECT count(*) FROM runs")) or 1
        rows = conn.execute(
            text(
                "SELECT automation_id, id FROM runs TABLESAMPLE BERNOULLI (:percent) "
                "REPEATABLE (5) ORDER BY hashtext(id::text) LIMIT :count"
            ),
            {"percent": min(100.0, 200.0 * count / total), "count": count},
        ).all()
    return [(str(owner), str(run_id)) for owner, run_id in rows]


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
    from bench.procs import fresh_schema

    if db_engine.dialect.name != "postgresql":
        raise SystemExit("bench.api_reads seeds with PostgreSQL's generate_series: use PostgreSQL")
    timings: dict[str, float] = {}
    began = time.perf_counter()
    fresh_schema(db_engine)
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
    count_rollup(db_engine)
    timings["rollup"] = round(time.perf_counter() - phase, 1)
    phase = time.perf_counter()
    # Autovacuum would have visited an insert-only table by now: visibility map and statistics.
    with db_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("contacts", "events", "runs", "run_steps", *ROLLUPS):
            conn.execute(text(f"VACUUM ANALYZE {table}"))
    timings["vacuum_analyze"] = round(time.perf_counter() - phase, 1)
    timings["total"] = round(time.perf_counter() - began, 1)
    return {
        "seconds": timings,
        "automation_ids": [str(a) for a in automation_ids],
        "counts": table_counts(db_engine),
    }


def reuse(db_engine: Engine, runs: int, automations: int) -> dict[str, Any] | None:
    """What `seed` left in this database, if it holds `runs` runs over `automations` automations
    (with the indexes this checkout's models add)."""
    with db_engine.connect() as conn:
        if not conn.scalar(text("SELECT to_regclass('runs') IS NOT NULL")):
            return None
        found = conn.scalars(
            text(
                "SELECT id FROM automations WHERE name LIKE 'Automation %' "
                "ORDER BY CAST(substr(name, 12) AS integer)"
            )
        ).all()
        if len(found) != automations or conn.scalar(text("SELECT count(*) FROM runs")) != runs:
            return None
        newest = conn.scalar(text("SELECT max(created_at) FROM runs"))
    # Data seeded by an older checkout (with create_all, not migrations): the indexes this
    # checkout's models have and it lacks.
    for table in Base.metadata.sorted_tables:
        for index in table.indexes:
            index.create(db_engine, checkfirst=True)
    return {
        "reused": True,
        "newest_run": str(newest),
        "automation_ids": [str(a) for a in found],
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


ROLLUPS = ("run_rollups", "step_rollups", "duration_rollups")


def count_rollup(db_engine: Engine) -> None:
    """The rollup of the seeded rows (as migration 0005 backfills it), then each run and step
    counter row copied, zeroed, into every other shard: as many rows as a busy system's."""
    from engine.store.rollup_notes import SHARDS
    from engine.store.rollup_rebuild import rebuild

    with db_engine.begin() as conn:
        rebuild(conn)
        for table, key in (
            ("run_rollups", "automation_id, span, hour"),
            ("step_rollups", "automation_id, span, hour, step_key, step_type"),
        ):
            conn.execute(
                text(
                    f"INSERT INTO {table} ({key}, shard) SELECT {key}, s FROM {table} "  # noqa: S608
                    "CROSS JOIN generate_series(1, :shards - 1) AS s"
                ),
                {"shards": SHARDS},
            )


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
            for table in ("runs", "run_steps", "events", *ROLLUPS)
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


def contact_cursors(db_engine: Engine, count: int) -> list[str]:
    """Contacts spread over the contacts list past its first page, as `after` cursors."""
    with db_engine.connect() as conn:
        ids = conn.scalars(
            text("SELECT id FROM contacts ORDER BY created_at DESC, id DESC OFFSET 100")
        ).all()
    rng = random.Random(13)
    return [str(value) for value in rng.sample(ids, min(count, len(ids)))]
