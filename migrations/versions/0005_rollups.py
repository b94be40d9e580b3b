"""rollups: per-automation, per-hour counters of runs, steps and run durations, backfilled
from the runs and steps already there; the metrics read them instead of every run

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:00:00.000000
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _counters(*names: str) -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        for name in names
    ]


def _key() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("automation_id", sa.Uuid(), nullable=False),
        sa.Column("span", sa.SmallInteger(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "run_rollups",
        *_key(),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        *_counters(*_RUN_COUNTERS),
        sa.PrimaryKeyConstraint(
            "automation_id", "span", "hour", "shard", name=op.f("pk_run_rollups")
        ),
    )
    op.create_table(
        "step_rollups",
        *_key(),
        sa.Column("step_key", sa.String(length=100), nullable=False),
        sa.Column("step_type", sa.String(length=20), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        *_counters(*_STEP_COUNTERS),
        sa.PrimaryKeyConstraint(
            "automation_id",
            "span",
            "hour",
            "step_key",
            "step_type",
            "shard",
            name=op.f("pk_step_rollups"),
        ),
    )
    op.create_table(
        "duration_rollups",
        *_key(),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        *_counters("runs"),
        sa.PrimaryKeyConstraint(
            "automation_id",
            "span",
            "hour",
            "bucket",
            "shard",
            name=op.f("pk_duration_rollups"),
        ),
    )
    # Set-based, in this migration's transaction: the rollup starts equal to a recount.
    _backfill(op.get_bind())


# Frozen: engine/store/rollup_rebuild.rebuild at this revision, copied, not imported, so that
# this migration counts forever as it did when written, whatever the live recount becomes.

# The lower bounds of the duration buckets 1 .. 288, as engine.percentiles computes them.
_BOUNDS = [0.001 * (2 ** (1 / 8)) ** i for i in range(8 * 36)]
_STATUSES = ("running", "completed", "failed", "cancelled", "skipped")
_ENDED = ("completed", "failed", "cancelled", "skipped")
_RUN_COUNTERS = (
    *_STATUSES,
    *(f"ended_{status}" for status in _ENDED),
    "retried_runs",
    "retries",
    "replays",
)
_STEP_COUNTERS = (
    "steps",
    "completed",
    "failed",
    "cancelled",
    "skipped_unsubscribed",
    "skipped_branch_not_taken",
    "skipped_contact_deleted",
)


def _backfill(conn: sa.Connection) -> None:
    """Each rollup table's hour rows (span 1) recounted from the runs and steps, in shard 0,
    then its day rows (span 24): the hour rows summed by UTC day."""
    dialect = conn.dialect.name
    bounds = _BOUNDS if dialect == "postgresql" else json.dumps(_BOUNDS)
    tables = (
        ("run_rollups", (), _RUN_COUNTERS, _recount_runs(dialect)),
        ("step_rollups", ("step_key", "step_type"), _STEP_COUNTERS, _recount_steps(dialect)),
        ("duration_rollups", ("bucket",), ("runs",), _recount_durations(dialect)),
    )
    for table, key, counters, recount in tables:
        columns = ", ".join(("automation_id", "hour", *key, *counters))
        insert = f"""
        INSERT INTO {table} (span, shard, {columns})
        SELECT 1, 0, {columns} FROM ({recount}) AS counted"""  # noqa: S608 - constants
        conn.execute(sa.text(insert), {"bounds": bounds})
    for table, key, counters, _ in tables:
        keys, sums = ", ".join((*key, "shard")), ", ".join(f"sum({name})" for name in counters)
        days = f"""
        INSERT INTO {table} (automation_id, span, hour, {keys}, {", ".join(counters)})
        SELECT automation_id, 24, hour - hour % 24, {keys}, {sums}
        FROM {table} WHERE span = 1
        GROUP BY automation_id, hour - hour % 24, {keys}"""  # noqa: S608 - constants
        conn.execute(sa.text(days))


def _hour(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"CAST(floor(extract(epoch FROM {column}) / 3600) AS integer)"
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / 3600)"


def _since_1970(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"{column} >= to_timestamp(0)"
    return f"{_hour(column, dialect)} >= 0"


def _flag(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"


def _recount_runs(dialect: str) -> str:
    """Per run: its status counted in the hour it was created, its end in the hour it ended."""
    created = [_flag(f"status = '{status}'") for status in _STATUSES]
    created += ["0" for _ in _ENDED]
    created += [_flag("retries > 0"), "retries", _flag("replay_of IS NOT NULL")]
    named = ", ".join(
        f"{value} AS {name}" for value, name in zip(created, _RUN_COUNTERS, strict=True)
    )
    ended = ["0" for _ in _STATUSES] + [_flag(f"status = '{status}'") for status in _ENDED]
    ended += ["0", "0", "0"]
    sums = ", ".join(f"sum({name}) AS {name}" for name in _RUN_COUNTERS)
    return f"""
    SELECT automation_id, hour, {sums}
    FROM (SELECT automation_id, {_hour("created_at", dialect)} AS hour, {named}
          FROM runs WHERE {_since_1970("created_at", dialect)}
          UNION ALL
          SELECT automation_id, {_hour("completed_at", dialect)}, {", ".join(ended)}
          FROM runs
          WHERE status <> 'running' AND completed_at IS NOT NULL
            AND {_since_1970("completed_at", dialect)}) AS x
    GROUP BY automation_id, hour"""  # noqa: S608 - composed of constants


def _recount_steps(dialect: str) -> str:
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
    named = ", ".join(
        f"{count} AS {name}" for count, name in zip(counts, _STEP_COUNTERS, strict=True)
    )
    hour = _hour("r.created_at", dialect)
    return f"""
    SELECT r.automation_id, {hour} AS hour, s.step_key, s.step_type, {named}
    FROM run_steps AS s JOIN runs AS r ON r.id = s.run_id
    WHERE {_since_1970("r.created_at", dialect)}
    GROUP BY r.automation_id, {hour}, s.step_key, s.step_type"""  # noqa: S608 - constants


def _recount_durations(dialect: str) -> str:
    """Per run that ran to its end, its duration's bucket: how many of the bounds it reaches."""
    if dialect == "postgresql":
        seconds = "CAST(extract(epoch FROM completed_at - started_at) AS double precision)"
        bucket = f"width_bucket({seconds}, CAST(:bounds AS double precision[]))"
    else:
        # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds, then the microseconds.
        micros = (
            "((CAST(strftime('%s', completed_at) AS INTEGER)"
            " - CAST(strftime('%s', started_at) AS INTEGER)) * 1000000"
            " + CAST(substr(completed_at, 21, 6) AS INTEGER)"
            " - CAST(substr(started_at, 21, 6) AS INTEGER))"
        )
        seconds = f"({micros} / 1000000.0)"
        bucket = f"(SELECT count(*) FROM json_each(:bounds) WHERE value <= {seconds})"  # noqa: S608
    return f"""
    SELECT automation_id, hour, bucket, count(*) AS runs
    FROM (SELECT automation_id, {_hour("created_at", dialect)} AS hour, {bucket} AS bucket
          FROM runs
          WHERE status IN ('completed', 'failed', 'skipped')
            AND {_since_1970("created_at", dialect)}
            AND started_at IS NOT NULL AND completed_at IS NOT NULL) AS timed
    GROUP BY automation_id, hour, bucket"""  # noqa: S608 - composed of constants


def downgrade() -> None:
    op.drop_table("duration_rollups")
    op.drop_table("step_rollups")
    op.drop_table("run_rollups")
