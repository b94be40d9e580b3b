"""Alembic migrations: the only way the schema is created in production."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.exc import OperationalError

HERE = Path(__file__).resolve().parent
# PostgreSQL's lock_not_available: a statement gave up on a lock after lock_timeout.
LOCK_NOT_AVAILABLE = "55P03"

log = logging.getLogger(__name__)


class UpgradeFailed(Exception):
    """A migration left the database in a state it must not commit (env.py's checks)."""


def alembic_config(database_url: str) -> Config:
    """An Alembic config for this package's migrations, without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    # Alembic's config is a ConfigParser: a literal % must be doubled.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@dataclass(frozen=True)
class LockPolicy:
    """How long a migration's statement waits for a table lock on PostgreSQL, and how often the
    upgrade is tried again when one does not come.

    An ALTER TABLE waits for every transaction using the table to end, and every query on the
    table that comes after it waits behind it: one long report or idle transaction on `runs`
    would stop ingestion and the workers for as long as it lasts. So a statement gives up after
    `timeout` seconds (its migration is undone whole, the ones before stay), and the upgrade
    starts again from there after a pause, up to `attempts` times."""

    timeout: float = 5.0
    attempts: int = 10
    pause: float = 3.0


def upgrade(database_url: str, revision: str = "head", *, locks: LockPolicy | None = None) -> None:
    """Bring the database at `database_url` up to `revision`."""
    locks = locks or LockPolicy()
    config = alembic_config(database_url)
    config.attributes["lock_timeout"] = locks.timeout
    for attempt in range(1, locks.attempts + 1):
        try:
            command.upgrade(config, revision)
            return
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            if attempt == locks.attempts:
                raise UpgradeFailed(
                    f"a table the next migration alters stayed in use: it waited"
                    f" {locks.timeout:g} s for its lock {locks.attempts} times"
                    f" ({_first_line(exc.orig)}); look for long or idle transactions in"
                    " pg_stat_activity"
                ) from exc
            log.warning(
                "the schema upgrade waited %g s for a table lock (try %d of %d); trying again"
                " in %g s: other sessions queue behind a waiting ALTER, so it does not wait"
                " longer",
                locks.timeout,
                attempt,
                locks.attempts,
                locks.pause,
            )
            time.sleep(locks.pause)


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def stamp(database_url: str, revision: str = "head") -> None:
    """Record the database as at `revision`, without running anything (a schema made another
    way: the test stacks create it from the models)."""
    command.stamp(alembic_config(database_url), revision, purge=True)


def current(database_url: str) -> str | None:
    """The revision the database is at, or None for an empty one."""
    from alembic.runtime.migration import MigrationContext

    from engine.db import create_db_engine

    db_engine = create_db_engine(database_url)
    try:
        with db_engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        db_engine.dispose()


def clashing_tables(database_url: str) -> list[str]:
    """The tables of this package's schema that the database holds already, sorted."""
    from sqlalchemy import inspect

    from engine.db import create_db_engine
    from models.tables import Base

    db_engine = create_db_engine(database_url)
    try:
        present = set(inspect(db_engine).get_table_names())
    finally:
        db_engine.dispose()
    return sorted(present & set(Base.metadata.tables))


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head() -> str | None:
    """The revision this version of the code migrates to."""
    return _scripts().get_current_head()


def known(revision: str) -> bool:
    """Whether `revision` is one of this package's migrations."""
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False
