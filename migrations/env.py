"""Alembic environment: runs migrations against the URL the config carries."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from engine.db import create_db_engine
from migrations import UpgradeFailed
from models.tables import Base

config = context.config
target_metadata = Base.metadata
# The advisory lock that makes upgrades of one PostgreSQL database take turns (any bigint
# nothing else of ours uses): "automations migrations" in ASCII, cut to 63 bits.
UPGRADE_LOCK = 0x6175746F6D6967


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"
    db_engine = create_db_engine(url)
    try:
        with db_engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                _sqlite_foreign_keys_off(connection)
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                # SQLite alters tables by copying them; batch mode does that for us.
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # Two upgrades at once (a second `db upgrade`, replicas migrating as they
                    # start) both read the old revision and ran the same DDL: the second
                    # failed on "already exists". Taken before the revision is read, held to
                    # the commit: the second waits, then finds the work done. SQLite's BEGIN
                    # IMMEDIATE serialises them already.
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({UPGRADE_LOCK})")
                context.run_migrations()
                if connection.dialect.name == "sqlite":
                    _check_sqlite_foreign_keys(connection)
    finally:
        db_engine.dispose()


def _sqlite_foreign_keys_off(connection: Connection) -> None:
    """Batch mode rebuilds a table by copying it and dropping the original: with foreign keys
    on, SQLite's DROP TABLE first deletes every row, and the ON DELETE CASCADE of the tables
    that reference it (runs: run_steps, outbox, bulk_items) empties those too. The pragma is
    ignored inside a transaction, so it is set on the driver's connection before the first."""
    assert not connection.in_transaction(), "PRAGMA foreign_keys is a no-op in a transaction"
    connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]


def _check_sqlite_foreign_keys(connection: Connection) -> None:
    """With the keys off, nothing checked them: a migration that broke one fails whole."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        found = ", ".join(f"{row[0]} row {row[1]} -> {row[2]}" for row in broken[:3])
        raise UpgradeFailed(f"the migration would break foreign keys ({found})")


if context.is_offline_mode():
    run_offline()
else:
    run_online()
