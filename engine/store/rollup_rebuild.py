"""The rollup recounted from the runs and steps themselves, set-based: the migration that adds
it backfills with this, and a database seeded behind the engine's back (a benchmark) too.

The running system never calls it: the rollup is kept in each transaction (rollup.py).
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, text

from engine.percentiles import BOUNDS

# A run's columns by status, counted where `status` is the run's status.
_STATUSES = ("running", "completed", "failed", "cancelled", "skipped")
_ENDED = ("completed", "failed", "cancelled", "skipped")


def _hour(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"CAST(floor(extract(epoch FROM {column}) / 3600) AS integer)"
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / 3600)"


def _seconds(start: str, end: str, dialect: str) -> str:
    """end - start in seconds, as the float Python's timedelta.total_seconds() gives."""
    if dialect == "postgresql":
        return f"CAST(extract(epoch FROM {end} - {start}) AS double precision)"
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds, then the microseconds.
    micros = (
        f"((CAST(strftime('%s', {end}) AS INTEGER) - CAST(strftime('%s', {start}) AS INTEGER))"
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
    FROM runs
    UNION ALL
    SELECT automation_id, {_hour("completed_at", dialect)}, {", ".join(ended)}
    FROM runs WHERE status <> 'running' AND completed_at IS NOT NULL"""  # noqa: S608


def _insert_runs(dialect: str) -> str:
    sums = ", ".join(f"sum({name})" for name in _RUN_COUNTERS)
    return f"""
    INSERT INTO run_rollups (automation_id, span, hour, shard, {", ".join(_RUN_COUNTERS)})
    SELECT automation_id, 1, hour, 0, {sums}
    FROM ({_run_rows(dialect)}) AS x
    GROUP BY automation_id, hour"""  # noqa: S608 - composed of constants


def _insert_steps(dialect: str) -> str:
    skipped = "s.status = 'skipped' AND "
    conditions = [
        "s.status = 'completed'",
        "s.status = 'failed'",
        "s.status = 'cancelled'",
        skipped + "s.skip_reason = 'unsubscribed'",
        skipped + "(s.skip_reason = 'branch_not_taken' OR s.skip_reason IS NULL)",
        skipped + "s.skip_reason = 'contact_deleted'",
    ]
    counts = ["count(*)", *(f"sum({_flag(condition)})" for condition in conditions)]
    hour = _hour("r.created_at", dialect)
    return f"""
    INSERT INTO step_rollups (automation_id, span, hour, step_key, step_type, shard, steps,
        completed, failed, cancelled, skipped_unsubscribed, skipped_branch_not_taken,
        skipped_contact_deleted)
    SELECT r.automation_id, 1, {hour}, s.step_key, s.step_type, 0, {", ".join(counts)}
    FROM run_steps AS s JOIN runs AS r ON r.id = s.run_id
    GROUP BY r.automation_id, {hour}, s.step_key, s.step_type"""  # noqa: S608 - constants


def _insert_durations(dialect: str) -> str:
    bucket = _bucket(_seconds("started_at", "completed_at", dialect), dialect)
    return f"""
    INSERT INTO duration_rollups (automation_id, span, hour, bucket, shard, runs)
    SELECT automation_id, 1, hour, bucket, 0, count(*)
    FROM (SELECT automation_id, {_hour("created_at", dialect)} AS hour, {bucket} AS bucket
          FROM runs
          WHERE status IN ('completed', 'failed', 'skipped')
            AND started_at IS NOT NULL AND completed_at IS NOT NULL) AS timed
    GROUP BY automation_id, hour, bucket"""  # noqa: S608 - composed of constants


def rebuild(conn: Connection) -> None:
    """Empty the rollup tables and count every run and step into them again."""
    dialect = conn.dialect.name
    for table in ("run_rollups", "step_rollups", "duration_rollups"):
        conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - a constant name
    conn.execute(text(_insert_runs(dialect)))
    conn.execute(text(_insert_steps(dialect)))
    bounds = list(BOUNDS) if dialect == "postgresql" else json.dumps(list(BOUNDS))
    conn.execute(text(_insert_durations(dialect)), {"bounds": bounds})
    for table, key, counters in _DAY_ROWS:
        conn.execute(text(_days(table, key, counters)))


# Each table's key after (automation, span, hour), and its counters.
_DAY_ROWS = (
    ("run_rollups", ("shard",), _RUN_COUNTERS),
    (
        "step_rollups",
        ("step_key", "step_type", "shard"),
        (
            "steps",
            "completed",
            "failed",
            "cancelled",
            "skipped_unsubscribed",
            "skipped_branch_not_taken",
            "skipped_contact_deleted",
        ),
    ),
    ("duration_rollups", ("bucket", "shard"), ("runs",)),
)


def _days(table: str, key: tuple[str, ...], counters: tuple[str, ...]) -> str:
    """The day rows (span 24) of a table: its hour rows summed by UTC day."""
    keys, sums = ", ".join(key), ", ".join(f"sum({name})" for name in counters)
    return f"""
    INSERT INTO {table} (automation_id, span, hour, {keys}, {", ".join(counters)})
    SELECT automation_id, 24, hour - hour % 24, {keys}, {sums}
    FROM {table} WHERE span = 1
    GROUP BY automation_id, hour - hour % 24, {keys}"""  # noqa: S608 - composed of constants
