"""Template versions: a publish copies the template's draft into template_versions and sends
render that copy, so that editing a published template changes nothing sent until the next
publish (as Resend does); templates.current_version_id and has_unpublished_versions say which
version is live and whether the draft has changes it lacks

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 07:10:00.000000
"""

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
CONTENT = ("subject", "sender", "reply_to", "html", "text_body", "variables")


def upgrade() -> None:
    op.create_table(
        "template_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("sender", sa.String(length=320), nullable=True),
        sa.Column("reply_to", JSON, nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("text_body", sa.Text(), nullable=True),
        sa.Column("variables", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
            name=op.f("fk_template_versions_template_id_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_versions")),
        sa.UniqueConstraint("template_id", "number", name=op.f("uq_template_versions_template_id")),
    )
    with op.batch_alter_table("templates") as batch:
        batch.add_column(sa.Column("current_version_id", sa.Uuid(), nullable=True))
        batch.add_column(
            sa.Column(
                "has_unpublished_versions", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch.create_foreign_key(
            op.f("fk_templates_current_version_id_template_versions"),
            "template_versions",
            ["current_version_id"],
            ["id"],
        )
    _backfill(op.get_bind())


def _backfill(conn: sa.Connection) -> None:
    """A published template's content becomes its version 1, published when it was; a draft
    has an unpublished version (its draft)."""
    types: dict[str, sa.types.TypeEngine[Any]] = {
        "subject": sa.Text(),
        "sender": sa.String(),
        "reply_to": JSON,
        "html": sa.Text(),
        "text_body": sa.Text(),
        "variables": JSON,
    }
    moment = sa.DateTime(timezone=True)
    templates = sa.table(
        "templates",
        sa.column("id", sa.Uuid()),
        sa.column("status", sa.String()),
        sa.column("published_at", moment),
        sa.column("updated_at", moment),
        sa.column("current_version_id", sa.Uuid()),
        sa.column("has_unpublished_versions", sa.Boolean()),
        *(sa.column(name, kind) for name, kind in types.items()),
    )
    versions = sa.table(
        "template_versions",
        sa.column("id", sa.Uuid()),
        sa.column("template_id", sa.Uuid()),
        sa.column("number", sa.Integer()),
        sa.column("created_at", moment),
        *(sa.column(name, kind) for name, kind in types.items()),
    )
    published = conn.execute(
        sa.select(templates).where(templates.c.status == "published").order_by(templates.c.id)
    ).all()
    for row in published:
        version_id = uuid.uuid4()
        conn.execute(
            versions.insert().values(
                id=version_id,
                template_id=row.id,
                number=1,
                created_at=row.published_at or row.updated_at,
                **{name: getattr(row, name) for name in CONTENT},
            )
        )
        conn.execute(
            templates.update().where(templates.c.id == row.id).values(current_version_id=version_id)
        )
    conn.execute(
        templates.update()
        .where(templates.c.status != "published")
        .values(has_unpublished_versions=True)
    )


def downgrade() -> None:
    # The draft is what the previous schema sends: a template with unpublished changes sends
    # them after the downgrade.
    # A SQLite schema made from the models has no such key (SQLite cannot add one by ALTER,
    # which the models' use_alter asks for): it is dropped where it exists.
    link = "fk_templates_current_version_id_template_versions"
    keys = {key["name"] for key in sa.inspect(op.get_bind()).get_foreign_keys("templates")}
    with op.batch_alter_table("templates") as batch:
        if link in keys:
            batch.drop_constraint(op.f(link), type_="foreignkey")
        batch.drop_column("has_unpublished_versions")
        batch.drop_column("current_version_id")
    op.drop_table("template_versions")
