"""step_rollups.unreached: the step rows created skipped (a branch not taken, the steps after
the contact's deletion), so that a step its run was at when its contact was deleted counts as
reached in the metrics; the counter is filled from a recount, as check-rollup --repair adds

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 04:45:00.000000
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("step_rollups") as batch:
        batch.add_column(
            sa.Column("unreached", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
    # Increments, as `check-rollup --repair` adds them: processes still running the previous
    # version keep their counts in the other counters meanwhile, and lose none of them.
    _correct_unreached(op.get_bind())


# Frozen: engine/store/rollup_rebuild's differences and correct, for this counter, at this
# revision, copied, not imported, so that this migration does forever what it did when written.

_ROLLUP = sa.table(
    "step_rollups",
    sa.column("automation_id", sa.Uuid()),
    sa.column("span", sa.SmallInteger()),
    sa.column("hour", sa.Integer()),
    sa.column("step_key", sa.String()),
    sa.column("step_type", sa.String()),
    sa.column("shard", sa.SmallInteger()),
    sa.column("unreached", sa.BigInteger()),
)
_KEY = ("automation_id", "span", "hour", "step_key", "step_type", "shard")


def _correct_unreached(conn: sa.Connection) -> None:
    """Add to shard 0 of each hour and day row what its `unreached`, summed over shards, lacks
    against a recount: the step rows created skipped (only a step that ran has a start)."""
    dialect = conn.dialect.name
    rows = {}
    for automation_id, span, hour, step_key, step_type, kept, recounted in conn.execute(
        sa.text(_differing(dialect))
    ):
        key = (uuid.UUID(str(automation_id)), int(span), int(hour), step_key, step_type, 0)
        rows[key] = {**dict(zip(_KEY, key, strict=True)), "unreached": int(recounted) - int(kept)}
    if not rows:
        return
    stmt = (postgresql if dialect == "postgresql" else sqlite).insert(_ROLLUP)
    upsert = stmt.on_conflict_do_update(
        index_elements=_KEY, set_={"unreached": _ROLLUP.c.unreached + stmt.excluded.unreached}
    )
    # In the order the engine's transactions write their rollup rows: no deadlock with them.
    conn.execute(upsert, [rows[key] for key in sorted(rows, key=str)])


def _differing(dialect: str) -> str:
    """The rows whose `unreached`, summed over shards, differs from the recount's, hour rows
    and day rows alike: the recount's hour rows, relabelled, are also its day rows."""
    if dialect == "postgresql":
        hour = "CAST(floor(extract(epoch FROM r.created_at) / 3600) AS integer)"
        since_1970 = "r.created_at >= to_timestamp(0)"
    else:
        hour = "(CAST(strftime('%s', r.created_at) AS INTEGER) / 3600)"
        since_1970 = f"{hour} >= 0"
    return f"""
    WITH recounted AS (
        SELECT r.automation_id, {hour} AS hour, s.step_key, s.step_type,
               sum(CASE WHEN s.status = 'skipped' AND s.started_at IS NULL THEN 1 ELSE 0 END)
                   AS unreached
        FROM run_steps AS s JOIN runs AS r ON r.id = s.run_id
        WHERE {since_1970}
        GROUP BY r.automation_id, {hour}, s.step_key, s.step_type)
    SELECT automation_id, span, hour, step_key, step_type, sum(kept), sum(counted)
    FROM (SELECT automation_id, span, hour, step_key, step_type,
                 unreached AS kept, 0 AS counted
          FROM step_rollups WHERE hour >= 0
          UNION ALL SELECT automation_id, 1, hour, step_key, step_type, 0, unreached
          FROM recounted
          UNION ALL SELECT automation_id, 24, hour - hour % 24, step_key, step_type, 0, unreached
          FROM recounted) AS both_sides
    GROUP BY automation_id, span, hour, step_key, step_type
    HAVING sum(kept) <> sum(counted)"""  # noqa: S608 - composed of constants


def downgrade() -> None:
    with op.batch_alter_table("step_rollups") as batch:
        batch.drop_column("unreached")
