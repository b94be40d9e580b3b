"""run_steps.redispatch_count: the sweeper's re-sends of a step, for their backoff; and an
index of the timers not yet sent, so that promoting them does not read a backlog

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A server default fills the rows that exist and the rows inserted without the column.
    op.add_column(
        "run_steps",
        sa.Column("redispatch_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    undispatched = sa.text("status IN ('pending', 'waiting') AND dispatched_at IS NULL")
    op.create_index(
        "ix_run_steps_undispatched",
        "run_steps",
        ["due_at"],
        postgresql_where=undispatched,
        sqlite_where=undispatched,
    )


def downgrade() -> None:
    op.drop_index("ix_run_steps_undispatched", table_name="run_steps")
    with op.batch_alter_table("run_steps") as batch:
        batch.drop_column("redispatch_count")
