"""Alembic environment: runs migrations against the URL the config carries."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

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
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                _sqlite_foreign_keys_off(connection)
            else:
                _take_turns(connection)
                _give_up_on_locks_after(connection, config.attributes.get("lock_timeout"))
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                # SQLite alters tables by copying them; batch mode does that for us.
                render_as_batch=sqlite,
                compare_type=True,
                # PostgreSQL: a transaction per migration, so that the locks of one (an ALTER
                # TABLE's) are not held through a later one's backfill. SQLite: one for the
                # whole upgrade (its DDL is transactional, which Alembic does not assume), so
                # that the foreign key check below can undo it, and so that BEGIN IMMEDIATE
                # makes two upgrades of one file take turns.
                transaction_per_migration=not sqlite,
                transactional_ddl=True,
            )
            try:
                with context.begin_transaction():
                    context.run_migrations()
                    if sqlite:
                        _check_sqlite_foreign_keys(connection)
            finally:
                if not sqlite:
                    _done(connection)
    finally:
        db_engine.dispose()


def _take_turns(connection: Connection) -> None:
    """Two upgrades at once (a second `db upgrade`, replicas migrating as they start) both read
    the old revision and ran the same DDL: the second failed on "already exists". A session
    lock taken before the revision is read: the second waits, then finds the work done."""
    connection.exec_driver_sql(f"SELECT pg_advisory_lock({UPGRADE_LOCK})")
    connection.commit()


def _give_up_on_locks_after(connection: Connection, seconds: float | None) -> None:
    """A statement that waits longer than this for a lock fails (migrations.LockPolicy says
    why); set after the advisory lock, for which a second upgrade waits as long as it takes."""
    if seconds is None:
        return
    connection.exec_driver_sql(f"SET lock_timeout = {max(1, round(seconds * 1000))}")
    connection.commit()


def _done(connection: Connection) -> None:
    """Let the next upgrade go, now rather than when the connection closes (a pooler in session
    mode keeps the server's session). A connection lost meanwhile took the lock with it."""
    try:
        if connection.in_transaction():
            connection.rollback()
        connection.exec_driver_sql(f"SELECT pg_advisory_unlock({UPGRADE_LOCK})")
        connection.commit()
    except DBAPIError:
        pass


def _sqlite_foreign_keys_off(connection: Connection) -> None:
    """Batch mode rebuilds a table by copying it and dropping the original: with foreign keys
    on, SQLite's DROP TABLE first deletes every row, and the ON DELETE CASCADE of the tables
    that reference it (runs: run_steps, outbox, bulk_items) empties those too. The pragma is
    ignored inside a transaction, so it is set on the driver's connection before the first."""
    driver = connection.connection.driver_connection
    driver.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    if driver.execute("PRAGMA foreign_keys").fetchone() != (0,):  # type: ignore[union-attr]
        raise UpgradeFailed("SQLite's foreign keys could not be turned off for the upgrade")


def _check_sqlite_foreign_keys(connection: Connection) -> None:
    """With the keys off, nothing checked them: an upgrade that broke one is undone whole."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        found = ", ".join(f"{row[0]} row {row[1]} -> {row[2]}" for row in broken[:3])
        raise UpgradeFailed(f"rows would be left without their parent rows ({found})")


if context.is_offline_mode():
    run_offline()
else:
    run_online()
