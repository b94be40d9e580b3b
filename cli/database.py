"""The database as the operator commands meet it: reachable, and at this version's schema.

Each check fails in one line that names the URL used (password hidden) and what to do, before a
command touches anything: a missing SQLite file is reported, never created.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

import migrations
from cli.failures import ExitCode, fail

CONNECT_TIMEOUT_SECONDS = 10
# Query options of a database URL that hold a secret (libpq's names).
SECRET_OPTIONS = frozenset({"password", "sslpassword"})
UPGRADE_HINT = "run automations db upgrade with the same AUTOMATIONS_DATABASE_URL"


def parsed_url(url: str) -> URL:
    """The URL as SQLAlchemy reads it; one that cannot be read is a bad setting, said in one line.

    make_url raises ValueError, not ArgumentError, for a port that is not a number."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        unusable(url, "its port is not a number" if isinstance(exc, ValueError) else _reason(exc))


def unusable(url: str, reason: str) -> NoReturn:
    """A database URL no driver can use: a bad setting, not an unreachable server."""
    fail(
        f"AUTOMATIONS_DATABASE_URL {shown(url)} cannot be used: {reason} (PostgreSQL "
        "is postgresql+psycopg://user:password@host/name, SQLite sqlite:///path)",
        ExitCode.BAD_SETTINGS,
    )


def shown(url: str) -> str:
    """The URL as it may be printed: without its password."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"
    # libpq also takes the password as a query option, which hide_password leaves shown.
    hidden = {name: "***" for name in parsed.query if name.lower() in SECRET_OPTIONS}
    shown_url = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return shown_url.replace("=%2A%2A%2A", "=***")


def require_kept(url: str) -> None:
    """An in-memory SQLite database is a new, empty one on every connection: an upgrade of it
    "succeeded" at revision None, and every other command then asked for the upgrade."""
    parsed = parsed_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        unusable(url, "an in-memory SQLite database keeps nothing from one connection to the next")


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    parsed = parsed_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _reason(exc: BaseException) -> str:
    """The first line of the driver's message, e.g. `connection refused`."""
    origin = getattr(exc, "orig", None) or exc
    text = str(origin).strip().splitlines()[0] if str(origin).strip() else type(origin).__name__
    text = re.sub(r"^connection failed:\s*", "", text)
    return text[0].lower() + text[1:] if text else type(origin).__name__


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """A failure to connect or open inside the block, as one line: DATABASE_UNREACHABLE."""
    try:
        yield
    except (ArgumentError, ImportError) as exc:
        unusable(url, _reason(exc))
    except (DBAPIError, OSError) as exc:
        fail(
            f"cannot connect to the database at {shown(url)}: {_reason(exc)}; check "
            "AUTOMATIONS_DATABASE_URL and that the server is up",
            ExitCode.DATABASE_UNREACHABLE,
        )


def check_reachable(url: str) -> None:
    """Connect once, with a timeout, or leave with one line."""
    is_sqlite = parsed_url(url).get_backend_name() == "sqlite"
    with reaching(url):
        connect_args = {} if is_sqlite else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        db_engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        try:
            with db_engine.connect():
                pass
        finally:
            db_engine.dispose()


def _demo_hint(url: str) -> str:
    """Point at the demo's database when the default one is missing and the demo's is there."""
    demo = Path("data/demo/automations.sqlite3")
    if sqlite_file(url) == Path("data/automations.sqlite3") and demo.exists():
        return f"; the demo's database is AUTOMATIONS_DATABASE_URL=sqlite:///{demo}"
    return ""


def require_schema(url: str) -> None:
    """Leave with one line unless the database is reachable and at this version's schema."""
    require_kept(url)
    path = sqlite_file(url)
    if path is not None and not path.exists():
        fail(
            f"no database at {shown(url)} (no such file): {UPGRADE_HINT}{_demo_hint(url)}",
            ExitCode.NO_SCHEMA,
        )
    check_reachable(url)
    with reaching(url):
        revision = migrations.current(url)
    wanted = migrations.head()
    if revision == wanted:
        return
    if revision is None:
        fail(f"the database at {shown(url)} has no schema: {UPGRADE_HINT}", ExitCode.NO_SCHEMA)
    if migrations.known(revision):
        fail(
            f"the database at {shown(url)} is at schema revision {revision}, this version "
            f"needs {wanted}: {UPGRADE_HINT}",
            ExitCode.NO_SCHEMA,
        )
    unknown_revision(url, revision)


def unknown_revision(url: str, revision: str) -> NoReturn:
    """A revision none of this version's migrations wrote: a newer version's, or not ours."""
    fail(
        f"the database at {shown(url)} is at schema revision {revision}, which this version "
        f"does not know (its latest is {migrations.head()}): a newer version of automations "
        "upgraded it (run that version), or it is another application's database (check "
        "AUTOMATIONS_DATABASE_URL)",
        ExitCode.NO_SCHEMA,
    )


def require_upgradable(url: str) -> None:
    """Leave with one line if `db upgrade` must not touch the database: a newer version's
    schema, another application's revision, or tables named like ours with no revision."""
    with reaching(url):
        revision = migrations.current(url)
        clashing = migrations.clashing_tables(url) if revision is None else []
    if revision is not None and not migrations.known(revision):
        unknown_revision(url, revision)
    if clashing:
        shown_tables = ", ".join(clashing[:3]) + (", ..." if len(clashing) > 3 else "")
        fail(
            f"the database at {shown(url)} has no automations schema revision but already "
            f"holds tables of its names ({shown_tables}): it is another application's "
            "database, or one made without automations db upgrade; point "
            "AUTOMATIONS_DATABASE_URL at an empty database",
            ExitCode.NO_SCHEMA,
        )


def upgrade_schema(url: str, revision: str = "head") -> str | None:
    """Upgrade the database to `revision`, or leave with one line saying why it was not or
    could not be; the revision it is at. An unknown `revision` raises alembic's CommandError."""
    require_kept(url)
    require_upgradable(url)
    try:
        migrations.upgrade(url, revision)
        return migrations.current(url)
    except (DBAPIError, OSError, migrations.UpgradeFailed) as exc:
        upgrade_failed(url, exc)


def upgrade_failed(url: str, exc: BaseException) -> NoReturn:
    """A migration that failed on a reachable database: what it is at now, and why."""
    try:
        revision = migrations.current(url)
    except (DBAPIError, OSError):
        revision = "unknown (the database is unreachable now)"
    fail(
        f"upgrading the database at {shown(url)} failed: {_reason(exc)}; each migration is "
        f"all or nothing, and the database is at revision {revision or 'none (empty)'}: fix "
        "the cause and run automations db upgrade again",
        ExitCode.NO_SCHEMA,
    )
