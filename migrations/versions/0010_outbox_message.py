"""outbox.reply_to, html, text_body, unsubscribe_url: the message as the first try rendered it,
so that a retry sends the same message under the same id instead of rendering it again from a
template or contact that may have changed (Resend refuses an idempotency key reused with
another body, which wedged such a retry)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 07:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # Rows written before keep NULLs: their retries render the message again, as they did.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("reply_to", JSON, nullable=True))
        batch.add_column(sa.Column("html", sa.Text(), nullable=True))
        batch.add_column(sa.Column("text_body", sa.Text(), nullable=True))
        batch.add_column(sa.Column("unsubscribe_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        for column in ("unsubscribe_url", "text_body", "html", "reply_to"):
            batch.drop_column(column)
