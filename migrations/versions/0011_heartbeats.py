"""heartbeats: when the sweeper last completed a tick, for an alert when beat or the sweeper
stops; its row is made here, so that the wait for a first tick is counted from the upgrade

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    heartbeats = op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_heartbeats")),
    )
    # The database server's clock, as the runtime's default clock reads it (on SQLite, the
    # host's, in UTC).
    op.execute(heartbeats.insert().values(name="sweeper", created_at=sa.func.current_timestamp()))


def downgrade() -> None:
    op.drop_table("heartbeats")
