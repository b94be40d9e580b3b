"""automations.runs_cancelling_at: a stop with cancel_runs (or a deletion) cancels the runs a
slice per transaction instead of all in one, which held every run's contact locked until the
last was cancelled (about a minute for a million runs); the mark says a cancel is under way,
cancelled_through_at/_id where its next slice starts

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CANCELLING = sa.text("runs_cancelling_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("automations") as batch:
        batch.add_column(sa.Column("runs_cancelling_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cancelled_through_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("cancelled_through_id", sa.Uuid()))
        batch.create_index(
            "ix_automations_cancelling",
            ["runs_cancelling_at"],
            postgresql_where=CANCELLING,
            sqlite_where=CANCELLING,
        )


def downgrade() -> None:
    with op.batch_alter_table("automations") as batch:
        batch.drop_index("ix_automations_cancelling")
        batch.drop_column("cancelled_through_id")
        batch.drop_column("cancelled_through_at")
        batch.drop_column("runs_cancelling_at")
