"""run_steps.worker_losses and lost_attempt: the deaths of the workers that ran a step, each
claim counted once, so that a step that kills every worker running it fails after a bound

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A server default fills the rows that exist and the rows inserted without the column.
    with op.batch_alter_table("run_steps") as batch:
        batch.add_column(
            sa.Column("worker_losses", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(sa.Column("lost_attempt", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_steps") as batch:
        batch.drop_column("lost_attempt")
        batch.drop_column("worker_losses")
