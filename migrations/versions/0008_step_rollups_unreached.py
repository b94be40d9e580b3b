"""step_rollups.unreached: the step rows created skipped (a branch not taken, the steps after
the contact's deletion), so that a step its run was at when its contact was deleted counts as
reached in the metrics; the counter is filled from a recount, as check-rollup --repair adds

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 04:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.store.rollup_rebuild import correct, differences

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
    conn = op.get_bind()
    correct(conn, [found for found in differences(conn) if found.counter == "unreached"])


def downgrade() -> None:
    with op.batch_alter_table("step_rollups") as batch:
        batch.drop_column("unreached")
