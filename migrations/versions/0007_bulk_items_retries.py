"""bulk_items.retries: the run's retry count when a bulk operation matched it, so that a run
retried since (by hand or by another operation) is skipped instead of retried or replayed again

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 02:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Items matched before this column have none: their runs are taken as before.
    with op.batch_alter_table("bulk_items") as batch:
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bulk_items") as batch:
        batch.drop_column("retries")
