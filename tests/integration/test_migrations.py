"""Migrations are the schema: upgrading an empty database to head yields exactly the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine.db import create_db_engine
from migrations import alembic_config, current, upgrade
from models.tables import Base
from tests.conftest import POSTGRES_URL, require_url


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    require_url("PostgreSQL", POSTGRES_URL)
    base = make_url(POSTGRES_URL)
    name = f"{base.database}_migrations"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def schema_differences(url: str) -> list[object]:
    db_engine = create_db_engine(url)
    try:
        with db_engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        db_engine.dispose()


def test_upgrade_empty_postgres_to_head_matches_the_models(empty_postgres: str) -> None:
    assert current(empty_postgres) is None
    upgrade(empty_postgres)
    assert current(empty_postgres) == "0004"
    assert schema_differences(empty_postgres) == []


def test_downgrade_to_base_and_up_again(empty_postgres: str) -> None:
    upgrade(empty_postgres)
    command.downgrade(alembic_config(empty_postgres), "base")
    upgrade(empty_postgres)
    assert schema_differences(empty_postgres) == []


def test_upgrade_empty_sqlite_to_head_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    upgrade(url)
    assert schema_differences(url) == []
