"""rollups: per-automation, per-hour counters of runs, steps and run durations, backfilled
from the runs and steps already there; the metrics read them instead of every run

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.store.rollup_rebuild import rebuild

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
        *_counters(
            "running",
            "completed",
            "failed",
            "cancelled",
            "skipped",
            "ended_completed",
            "ended_failed",
            "ended_cancelled",
            "ended_skipped",
            "retried_runs",
            "retries",
            "replays",
        ),
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
        *_counters(
            "steps",
            "completed",
            "failed",
            "cancelled",
            "skipped_unsubscribed",
            "skipped_branch_not_taken",
            "skipped_contact_deleted",
        ),
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
    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("duration_rollups")
    op.drop_table("step_rollups")
    op.drop_table("run_rollups")
