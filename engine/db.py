"""Database engines and sessions for PostgreSQL and the embedded SQLite default."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

from engine import json_text
from engine.private_files import make_private_dir
from engine.store import rollup
from models.tables import Base

log = logging.getLogger(__name__)
T = TypeVar("T")
# Connections kept per process, and opened beyond them at a peak (closed after use).
POOL_SIZE = 16
POOL_OVERFLOW = 8
# A pooled connection idle for longer than this (seconds) is tested before it is handed out.
PING_AFTER_IDLE = 1.0
_IDLE_SINCE = "automations_idle_since"
# psycopg turns a query's `%(name)s` placeholders into PostgreSQL's `$1` once per text, but only
# for texts of up to 4 KB (psycopg._queries.MAX_CACHED_STATEMENT_LENGTH): a longer one is split
# anew at every execution. The ingestion's store statement (engine/store/intake.py) is 5 KB, and
# splitting it cost 3 to 7% of a group's CPU. Our statements are a fixed set of texts, so the
# bound is raised to this; tests/integration/test_db_pool.py notices an upgrade that moves it.
LONGEST_CACHED_STATEMENT = 16_384


def create_db_engine(
    url: str, *, pre_ping: bool = True, prepared_statements: bool = True, **kwargs: Any
) -> Engine:
    """An engine with the per-dialect settings the runtime relies on; JSON columns written
    through engine/json_text.py.

    `pre_ping` tests a connection as it leaves the pool if it sat there for `PING_AFTER_IDLE`
    (one round trip); callers that retry on a dropped connection (`retry_on_disconnect`) can
    do without it.

    `prepared_statements=False` for a transaction pooler (Settings.database_pooling): psycopg
    prepares a statement it has run a few times on its connection's server session, which such
    a pooler hands to other clients between transactions.
    """
    parsed = make_url(url)
    kwargs.setdefault("json_serializer", json_text.dumps)
    # A failed statement's message goes to logs, tracebacks and Celery's task events (Flower):
    # without the values it carried (addresses, payloads, emails' text, kept answers).
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() != "sqlite":
        # SQLAlchemy's default pool keeps 5 connections: an API process serving more requests
        # at once opened and closed a connection per request beyond them (a fork of a backend
        # each). Connections are only opened as concurrency needs them.
        kwargs.setdefault("pool_size", POOL_SIZE)
        kwargs.setdefault("max_overflow", POOL_OVERFLOW)
        if parsed.get_driver_name() == "psycopg":
            _cache_long_statements()
            from engine.pg_cursor import LazyDescriptionCursor

            kwargs["connect_args"] = {
                "cursor_factory": LazyDescriptionCursor,
                **({} if prepared_statements else {"prepare_threshold": None}),
                **kwargs.get("connect_args", {}),
            }
        db_engine = create_engine(url, **kwargs)
        if pre_ping:
            _ping_when_idle(db_engine)
        return db_engine
    database = parsed.database
    if database and database != ":memory:":
        make_private_dir(Path(database).parent)
    db_engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
    if database and database != ":memory:" and not parsed.query.get("uri"):
        _create_private(db_engine, Path(database))
    _serialize_sqlite_writers(db_engine)
    return db_engine


def _cache_long_statements() -> None:
    try:
        from psycopg import _queries
    except ImportError:  # another driver: nothing to tune
        return
    if getattr(_queries, "MAX_CACHED_STATEMENT_LENGTH", LONGEST_CACHED_STATEMENT) < (
        LONGEST_CACHED_STATEMENT
    ):
        _queries.MAX_CACHED_STATEMENT_LENGTH = LONGEST_CACHED_STATEMENT


def _ping_when_idle(db_engine: Engine) -> None:
    # SQLAlchemy's pool_pre_ping tests every connection it hands out: a round trip per
    # transaction, a sixth of a lone event's. A connection back in use within a second was
    # alive then; one that sat idle longer (through a database restart, say) is tested, and
    # the pool replaced if it is dead. A restart in the middle of busy traffic fails the
    # transactions under way, as it would anyway, and SQLAlchemy then drops every connection
    # opened before it.
    @event.listens_for(db_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(db_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return  # a new connection, or one in use a moment ago
        try:
            db_engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool retries with a new connection, all older ones dropped
            raise InvalidatePoolError(str(exc)) from exc


def _create_private(db_engine: Engine, path: Path) -> None:
    """SQLite creates a missing database as the umask lets it, readable by every local user
    (contacts, emails, their unsubscribe links); its WAL and shared-memory files take the
    database's mode. Before a connection opens it, a missing file is created empty, 0600,
    which SQLite takes for a new database; a file already there keeps the mode it has. A path
    that is a symbolic link is followed, as SQLite follows it: a dangling one gets its target
    created 0600 (O_EXCL alone would refuse the link, and SQLite create it as the umask lets it)."""

    @event.listens_for(db_engine, "do_connect")
    def _on_do_connect(*_: Any) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        # There already, or not creatable here: SQLite's own open then says why.
        with suppress(OSError):
            os.close(os.open(os.path.realpath(path), flags, 0o600))


def _serialize_sqlite_writers(db_engine: Engine) -> None:
    # pysqlite's own BEGIN is deferred: two transactions could both read, then fail to upgrade
    # their locks. BEGIN IMMEDIATE takes the write lock up front, so SQLite transactions run one
    # at a time, which is what PostgreSQL's row locks give us elsewhere.
    @event.listens_for(db_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk when it returns, power loss included. NORMAL would survive a
        # killed process but could lose the last commits to a power cut or an OS crash (an
        # email's `sent` among them, so it would go out again); it saves ~0.3 ms per commit.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(db_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def import_driver(url: str) -> None:
    """Import the database driver of this URL now (a process about to fork its workers)."""
    make_url(url).get_dialect().import_dbapi()


def create_session_factory(bind: Engine | Connection) -> sessionmaker[Session]:
    """Sessions on an engine, or all on one connection (a simulation's in-memory database).

    Each transaction writes its rollup counters just before it commits (engine/store/rollup.py).
    """
    sessions = sessionmaker(bind, expire_on_commit=False, autoflush=False)
    rollup.track(sessions)
    return sessions


class WriteWhileReading(RuntimeError):
    """A statement that writes, sent through a read session: it would commit on its own."""


def create_read_session_factory(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions for requests that only read, on the same connections as `sessions`.

    On PostgreSQL each statement is its own transaction (autocommit): it sees what it would
    see inside one at READ COMMITTED, a snapshot per statement, without a BEGIN and a COMMIT
    round trip around the request's reads (reads that must agree with each other take a
    snapshot()). A statement that writes is refused before it is sent: it would commit alone.
    Elsewhere (SQLite, or sessions on one connection) `sessions` themselves.
    """
    bind = sessions.kw.get("bind")
    if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
        return sessions
    autocommit = bind.execution_options(isolation_level="AUTOCOMMIT")
    # On this engine only: the parent's statements (every write) pay nothing for the check.
    event.listen(autocommit, "before_cursor_execute", _refuse_writes)
    return sessionmaker(autocommit, expire_on_commit=False, autoflush=False)


def _refuse_writes(
    _connection: Connection,
    _cursor: Any,
    statement: str,
    _parameters: Any,
    context: Any,
    executemany: bool,
) -> None:
    reads = statement.lstrip()[:6].upper().startswith(("SELECT", "WITH"))
    writes = context is not None and (context.isinsert or context.isupdate or context.isdelete)
    if executemany or writes or not reads:
        raise WriteWhileReading(f"A read session refused a statement: {statement[:80]!r}")


@contextmanager
def reads(read_sessions: sessionmaker[Session]) -> Iterator[Session]:
    """Statements that only read, through create_read_session_factory's sessions."""
    with read_sessions() as session, session.begin():
        yield session


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    with sessions() as session, session.begin():
        yield session


@contextmanager
def snapshot(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One read-only transaction that sees the database as it was at its first statement, for
    reads that must agree with each other while writers go on (PostgreSQL's REPEATABLE READ;
    a SQLite transaction holds the only write lock, so nothing changes under it)."""
    with sessions() as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            session.connection(
                execution_options={
                    "isolation_level": "REPEATABLE READ",
                    "postgresql_readonly": True,
                }
            )
        yield session


def retry_on_disconnect(operation: Callable[[], T]) -> T:
    """Run `operation`, once more if the database connection it used turned out to be dead.

    After a database restart every pooled connection is dead; SQLAlchemy invalidates the pool on
    the first error that says so, and the second attempt gets a fresh connection. Only for
    operations whose transactions are safe to re-run (the executor's claim makes them so).
    """
    try:
        return operation()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("database connection lost; retrying on a new connection")
        return operation()


def create_schema(db_engine: Engine) -> None:
    """Create every table; for tests and the embedded mode (production uses migrations)."""
    Base.metadata.create_all(db_engine)


def drop_schema(db_engine: Engine) -> None:
    """Drop every table the database holds (tests and benchmarks, on databases they own): the
    tables as they are, reflected, so that a schema another version made goes too (the
    models' drop would look for a constraint that version did not have)."""
    found = MetaData()
    found.reflect(db_engine)
    found.drop_all(db_engine)
