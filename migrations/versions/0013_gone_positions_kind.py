"""gone_positions.kind: the table a deleted item was deleted from, so that its id is a page
cursor of that kind of list only (a deleted contact's id named a place in any list)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows written before keep NULL, a place in any list, as they were, for their last days.
    with op.batch_alter_table("gone_positions") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gone_positions") as batch:
        batch.drop_column("kind")
