"""gone_positions: where deleted contacts, segments, templates, domains, events and API keys
stood in their lists, so that a page cursor naming one goes on paging from there

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gone_positions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gone_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gone_positions")),
    )
    op.create_index("ix_gone_positions_gone_at", "gone_positions", ["gone_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_gone_positions_gone_at", table_name="gone_positions")
    op.drop_table("gone_positions")
