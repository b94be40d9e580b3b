"""Alembic migrations: the only way the schema is created in production."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError

HERE = Path(__file__).resolve().parent


class UpgradeFailed(Exception):
    """A migration left the database in a state it must not commit (env.py's checks)."""


def alembic_config(database_url: str) -> Config:
    """An Alembic config for this package's migrations, without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    # Alembic's config is a ConfigParser: a literal % must be doubled.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


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
