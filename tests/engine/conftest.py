"""The in-process engine tier: the executor, progress, ingestion, recovery and the sweeper on a
SQLite database in memory, with a frozen clock, a recording transport and a dispatcher that
only records. No PostgreSQL, Redis or worker: an engine bug reproduces here in milliseconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from engine.clock import FrozenClock
from engine.db import create_schema, create_session_factory
from engine.mail.recording import RecordingTransport
from engine.runtime import Runtime
from engine.settings import Settings
from tests.engine.driver import T0, Driver

SECRET = "engine-tier-secret-key-0123456789abcdef"

MakeDriver = Callable[..., Driver]


def _memory_database() -> Engine:
    db_engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )

    @event.listens_for(db_engine, "connect")
    def _foreign_keys(connection: Any, _: object) -> None:
        connection.execute("PRAGMA foreign_keys=ON")

    create_schema(db_engine)
    return db_engine


@pytest.fixture
def make_driver() -> Iterator[MakeDriver]:
    """Drivers on fresh in-memory databases, with settings changed as the test asks."""
    engines: list[Engine] = []

    def make(**changes: Any) -> Driver:
        settings = Settings(
            env="test",
            database_url="sqlite://",
            secret_key=SECRET,  # type: ignore[arg-type]
            retry_max_attempts=3,
        ).model_copy(update=changes)
        engines.append(_memory_database())
        rt = Runtime(
            settings,
            sessions=create_session_factory(engines[-1]),
            clock=FrozenClock(T0),
            transport=RecordingTransport(),
        )
        return Driver(rt)

    yield make
    for db_engine in engines:
        db_engine.dispose()


@pytest.fixture
def driver(make_driver: MakeDriver) -> Driver:
    return make_driver()
