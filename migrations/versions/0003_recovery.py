"""Recovery: step attempts kept for the audit, runs retried and replayed, bulk operations;
run_steps.failed_attempts (what the retry policy counts) and claimed_at (a try's start)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 07:37:08.564360
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)
RUNNING = sa.text("status = 'running'")
PENDING = sa.text("status = 'pending'")
REPLAYS = sa.text("replay_of IS NOT NULL")


def _time(name: str, *, nullable: bool) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "bulk_operations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("automation_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("filter", JSON, nullable=False),
        sa.Column("filter_hash", sa.String(length=64), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        _time("completed_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["automation_id"],
            ["automations.id"],
            name=op.f("fk_bulk_operations_automation_id_automations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_operations")),
    )
    op.create_index(
        "ix_bulk_operations_automation", "bulk_operations", ["automation_id", "created_at"]
    )
    op.create_index(
        "ix_bulk_operations_running",
        "bulk_operations",
        ["updated_at"],
        postgresql_where=RUNNING,
        sqlite_where=RUNNING,
    )
    op.create_table(
        "bulk_items",
        sa.Column("bulk_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("new_run_id", sa.Uuid(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _time("completed_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["bulk_id"],
            ["bulk_operations.id"],
            name=op.f("fk_bulk_items_bulk_id_bulk_operations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_bulk_items_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bulk_id", "run_id", name=op.f("pk_bulk_items")),
    )
    op.create_index(
        "ix_bulk_items_pending",
        "bulk_items",
        ["bulk_id", "run_id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_table(
        "step_attempts",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_key", sa.String(length=100), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        _time("started_at", nullable=True),
        _time("completed_at", nullable=False),
        sa.Column("error", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id", "step_key"],
            ["run_steps.run_id", "run_steps.step_key"],
            name=op.f("fk_step_attempts_run_id_run_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "step_key", "number", name=op.f("pk_step_attempts")),
    )
    # A server default fills the rows that exist and the rows inserted without the column.
    with op.batch_alter_table("run_steps") as batch:
        batch.add_column(
            sa.Column("failed_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(_time("claimed_at", nullable=True))
    # Batch mode: SQLite adds a foreign key only by rebuilding the table.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("replay_of", sa.Uuid(), nullable=True))
        batch.add_column(
            sa.Column("retries", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(_time("last_retried_at", nullable=True))
        batch.create_foreign_key(
            op.f("fk_runs_replay_of_runs"), "runs", ["replay_of"], ["id"], ondelete="SET NULL"
        )
        batch.create_index(
            "ix_runs_replay_of", ["replay_of"], postgresql_where=REPLAYS, sqlite_where=REPLAYS
        )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_replay_of")
        batch.drop_constraint(op.f("fk_runs_replay_of_runs"), type_="foreignkey")
        batch.drop_column("last_retried_at")
        batch.drop_column("retries")
        batch.drop_column("replay_of")
    with op.batch_alter_table("run_steps") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("failed_attempts")
    op.drop_table("step_attempts")
    op.drop_index("ix_bulk_items_pending", table_name="bulk_items")
    op.drop_table("bulk_items")
    op.drop_index("ix_bulk_operations_running", table_name="bulk_operations")
    op.drop_index("ix_bulk_operations_automation", table_name="bulk_operations")
    op.drop_table("bulk_operations")
