"""The rollup recounted from the runs and steps themselves, set-based.

`rebuild` replaces the rollup with the recount: a database seeded behind the engine's back
(a benchmark) is counted with it. Migrations 0005 and 0008 hold frozen copies of these
statements as they were at their revision. `differences` compares
the two and `correct` adds what a counter lacks: an operator's check and repair of a live
system (engine/rollup_check.py). The running system never calls any of them: the rollup is
kept in each transaction (rollup.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, inspect, text

from engine.percentiles import BOUNDS
from engine.store.rollup_upserts import upsert_statement
from models.tables import Base

# A run's columns by status, counted where `status` is the run's status.
_STATUSES = ("running", "completed", "failed", "cancelled", "skipped")
_ENDED = ("completed", "failed", "cancelled", "skipped")


def _whole_seconds(column: str) -> str:
    """Whole seconds since the epoch of a SQLite timestamp, its fraction cut off as Python's
    hour_of does: strftime('%s') rounds to the millisecond, so 12:59:59.9996 would read as 13:00."""
    return f"CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER)"


def _hour(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"CAST(floor(extract(epoch FROM {column}) / 3600) AS integer)"
    return f"({_whole_seconds(column)} / 3600)"


def _from(column: str, dialect: str) -> str:
    """`column` is in hour :since_hour or later (0: every row), as an index can use it."""
    if dialect == "postgresql":
        return f"{column} >= to_timestamp(CAST(:since_hour AS bigint) * 3600)"
    return f"{_hour(column, dialect)} >= :since_hour"


def _seconds(start: str, end: str, dialect: str) -> str:
    """end - start in seconds, as the float Python's timedelta.total_seconds() gives."""
    if dialect == "postgresql":
        return f"CAST(extract(epoch FROM {end} - {start}) AS double precision)"
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds, then the microseconds.
    micros = (
        f"(({_whole_seconds(end)} - {_whole_seconds(start)})"
        f" * 1000000 + CAST(substr({end}, 21, 6) AS INTEGER)"
        f" - CAST(substr({start}, 21, 6) AS INTEGER))"
    )
    return f"({micros} / 1000000.0)"


def _bucket(seconds: str, dialect: str) -> str:
    """How many of the bounds the duration reaches: engine.percentiles.bucket_of in SQL."""
    if dialect == "postgresql":
        return f"width_bucket({seconds}, CAST(:bounds AS double precision[]))"
    return f"(SELECT count(*) FROM json_each(:bounds) WHERE value <= {seconds})"  # noqa: S608


def _flag(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"


_RUN_COUNTERS = (
    *_STATUSES,
    *(f"ended_{status}" for status in _ENDED),
    "retried_runs",
    "retries",
    "replays",
)


def _run_rows(dialect: str) -> str:
    """Per run: its status counted in the hour it was created, its end in the hour it ended."""
    created = [_flag(f"status = '{status}'") for status in _STATUSES]
    created += ["0" for _ in _ENDED]
    created += [_flag("retries > 0"), "retries", _flag("replay_of IS NOT NULL")]
    named = ", ".join(
        f"{value} AS {name}" for value, name in zip(created, _RUN_COUNTERS, strict=True)
    )
    ended = ["0" for _ in _STATUSES] + [_flag(f"status = '{status}'") for status in _ENDED]
    ended += ["0", "0", "0"]
    return f"""
    SELECT automation_id, {_hour("created_at", dialect)} AS hour, {named}
    FROM runs WHERE {_from("created_at", dialect)}
    UNION ALL
    SELECT automation_id, {_hour("completed_at", dialect)}, {", ".join(ended)}
    FROM runs
    WHERE status <> 'running' AND completed_at IS NOT NULL
      AND {_from("completed_at", dialect)}"""  # noqa: S608


def _recount_runs(dialect: str) -> str:
    sums = ", ".join(f"sum({name}) AS {name}" for name in _RUN_COUNTERS)
    return f"""
    SELECT automation_id, hour, {sums}
    FROM ({_run_rows(dialect)}) AS x
    GROUP BY automation_id, hour"""  # noqa: S608 - composed of constants


_STEP_COUNTERS = (
    "steps",
    "completed",
    "failed",
    "cancelled",
    "skipped_unsubscribed",
    "skipped_branch_not_taken",
    "skipped_contact_deleted",
    "unreached",
)


def _recount_steps(dialect: str) -> str:
    skipped = "s.status = 'skipped' AND "
    conditions = [
        "s.status = 'completed'",
        "s.status = 'failed'",
        "s.status = 'cancelled'",
        skipped + "s.skip_reason = 'unsubscribed'",
        skipped + "(s.skip_reason = 'branch_not_taken' OR s.skip_reason IS NULL)",
        skipped + "s.skip_reason = 'contact_deleted'",
        # Created skipped: only a step that ran (store/runs.finish_step) has a start.
        skipped + "s.started_at IS NULL",
    ]
    counts = ["count(*)", *(f"sum({_flag(condition)})" for condition in conditions)]
    named = ", ".join(
        f"{count} AS {name}" for count, name in zip(counts, _STEP_COUNTERS, strict=True)
    )
    hour = _hour("r.created_at", dialect)
    return f"""
    SELECT r.automation_id, {hour} AS hour, s.step_key, s.step_type, {named}
    FROM run_steps AS s JOIN runs AS r ON r.id = s.run_id
    WHERE {_from("r.created_at", dialect)}
    GROUP BY r.automation_id, {hour}, s.step_key, s.step_type"""  # noqa: S608 - constants


def _recount_durations(dialect: str) -> str:
    bucket = _bucket(_seconds("started_at", "completed_at", dialect), dialect)
    return f"""
    SELECT automation_id, hour, bucket, count(*) AS runs
    FROM (SELECT automation_id, {_hour("created_at", dialect)} AS hour, {bucket} AS bucket
          FROM runs
          WHERE status IN ('completed', 'failed', 'skipped')
            AND {_from("created_at", dialect)}
            AND started_at IS NOT NULL AND completed_at IS NOT NULL) AS timed
    GROUP BY automation_id, hour, bucket"""  # noqa: S608 - composed of constants


@dataclass(frozen=True)
class _Table:
    """A rollup table: its key between (automation_id, span, hour) and the shard, its
    counters, and the statement that recounts its hour rows from the runs and steps."""

    name: str
    key: tuple[str, ...]
    counters: tuple[str, ...]
    recount: Callable[[str], str]


_TABLES = (
    _Table("run_rollups", (), _RUN_COUNTERS, _recount_runs),
    _Table("step_rollups", ("step_key", "step_type"), _STEP_COUNTERS, _recount_steps),
    _Table("duration_rollups", ("bucket",), ("runs",), _recount_durations),
)


def _parameters(dialect: str, since_hour: int = 0) -> dict[str, object]:
    """The duration buckets' bounds, as each dialect reads an array, and the first hour
    recounted (0: all of them)."""
    bounds = list(BOUNDS) if dialect == "postgresql" else json.dumps(list(BOUNDS))
    return {"bounds": bounds, "since_hour": since_hour}


def rebuild(conn: Connection) -> None:
    """Empty the rollup tables and count every run and step into them again. Not for a live
    system, whose writers would add to counts it is replacing: `correct` mends that one."""
    dialect = conn.dialect.name
    tables = [_as_migrated(conn, table) for table in _TABLES]
    for table in tables:
        conn.execute(text(f"DELETE FROM {table.name}"))  # noqa: S608 - a constant name
    for table in tables:
        conn.execute(text(_insert(table, dialect)), _parameters(dialect))
    for table in tables:
        conn.execute(text(_days(table.name, (*table.key, "shard"), table.counters)))


def _as_migrated(conn: Connection, table: _Table) -> _Table:
    """The table with the counters its database has: a database at an earlier revision (the
    migration tests' seeds) lacks the counters later ones add."""
    present = {column["name"] for column in inspect(conn).get_columns(table.name)}
    counters = tuple(name for name in table.counters if name in present)
    return replace(table, counters=counters)


def _insert(table: _Table, dialect: str) -> str:
    """The hour rows (span 1) of a table, recounted, all in shard 0."""
    columns = ", ".join(("automation_id", "hour", *table.key, *table.counters))
    return f"""
    INSERT INTO {table.name} (span, shard, {columns})
    SELECT 1, 0, {columns} FROM ({table.recount(dialect)}) AS counted"""  # noqa: S608


def _days(table: str, key: tuple[str, ...], counters: tuple[str, ...]) -> str:
    """The day rows (span 24) of a table: its hour rows summed by UTC day."""
    keys, sums = ", ".join(key), ", ".join(f"sum({name})" for name in counters)
    return f"""
    INSERT INTO {table} (automation_id, span, hour, {keys}, {", ".join(counters)})
    SELECT automation_id, 24, hour - hour % 24, {keys}, {sums}
    FROM {table} WHERE span = 1
    GROUP BY automation_id, hour - hour % 24, {keys}"""  # noqa: S608 - composed of constants


@dataclass(frozen=True)
class Difference:
    """One counter of one rollup row that is not what a recount gives."""

    table: str
    automation_id: uuid.UUID
    span: int  # 1: an hour; 24: the UTC day starting at `hour`
    hour: int
    key: tuple[object, ...]  # a step's (key, type), a duration's bucket; () for runs
    counter: str
    kept: int
    recounted: int


def differences(conn: Connection, since_day: int = 0) -> list[Difference]:
    """Every counter the rollup tables keep (summed over shards) that differs from a recount of
    the runs and steps, hour rows and day rows alike; compared in the database, which sends
    only what differs. Read it in one snapshot: on a live PostgreSQL, a REPEATABLE READ
    transaction.

    `since_day` (days since 1970-01-01, UTC) limits both sides to the rows of that day and
    later: a run counts in the hours it was created and ended, never earlier, so the recount of
    those hours needs only the runs created or ended in them."""
    dialect = conn.dialect.name
    parameters = _parameters(dialect, since_day * 24)
    found: list[Difference] = []
    for table in (_as_migrated(conn, table) for table in _TABLES):
        width = 3 + len(table.key)
        for row in conn.execute(text(_differing(table, dialect)), parameters):
            automation_id, span, hour, *key = row[:width]
            counts = row[width:]
            found.extend(
                Difference(
                    table.name,
                    uuid.UUID(str(automation_id)),
                    int(span),
                    int(hour),
                    tuple(key),
                    counter,
                    int(counts[2 * index]),
                    int(counts[2 * index + 1]),
                )
                for index, counter in enumerate(table.counters)
                if counts[2 * index] != counts[2 * index + 1]
            )
    return found


def _differing(table: _Table, dialect: str) -> str:
    """The rows of a table whose counters differ from the recount's: each counter kept (summed
    over shards) and recounted, side by side. The recount's hour rows are also its day rows,
    relabelled (span 24, the day's first hour) and summed by the same GROUP BY."""
    zeros = ["0"] * len(table.counters)
    # Every branch's columns: k0.. the row's key, then c0.. the kept counters and the recount's.
    kept = ["automation_id", "span", "hour", *table.key, *table.counters, *zeros]
    named = ", ".join(
        f"{column} AS {alias}" for column, alias in zip(kept, _aliases(table), strict=True)
    )
    recount = [*table.key, *zeros, *table.counters]
    hours = ", ".join(["automation_id", "1", "hour", *recount])
    days = ", ".join(["automation_id", "24", "hour - hour % 24", *recount])
    keys = ", ".join(f"k{index}" for index in range(3 + len(table.key)))
    width = len(table.counters)
    sides = ", ".join(f"sum(c{n}), sum(c{n + width})" for n in range(width))
    differ = " OR ".join(f"sum(c{n}) <> sum(c{n + width})" for n in range(width))
    return f"""
    WITH recounted AS ({table.recount(dialect)})
    SELECT {keys}, {sides}
    FROM (SELECT {named} FROM {table.name} WHERE hour >= :since_hour
          UNION ALL SELECT {hours} FROM recounted
          UNION ALL SELECT {days} FROM recounted) AS both_sides
    GROUP BY {keys}
    HAVING {differ}"""  # noqa: S608 - composed of constants


def _aliases(table: _Table) -> list[str]:
    keys = [f"k{index}" for index in range(3 + len(table.key))]
    return keys + [f"c{index}" for index in range(2 * len(table.counters))]


def correct(conn: Connection, found: list[Difference]) -> None:
    """Add to each counter what `differences` found it lacks, in shard 0, as the transactions
    add theirs. What committed since the differences were read is counted already, in the
    rollup and in the rows alike, so the difference is still the right correction."""
    dialect = conn.dialect.name
    for table in _TABLES:
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for item in (d for d in found if d.table == table.name):
            key = (item.automation_id, item.span, item.hour, *item.key, 0)  # shard 0
            row = rows.setdefault(
                key,
                {
                    "automation_id": item.automation_id,
                    "span": item.span,
                    "hour": item.hour,
                    **dict(zip(table.key, item.key, strict=True)),
                    "shard": 0,
                    **dict.fromkeys(table.counters, 0),
                },
            )
            row[item.counter] = item.recounted - item.kept
        if rows:
            # In the order the transactions write theirs (store/rollup.py): no deadlock.
            ordered = [rows[key] for key in sorted(rows, key=str)]
            conn.execute(upsert_statement(dialect, Base.metadata.tables[table.name]), ordered)
