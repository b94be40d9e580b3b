"""The runtime's collaborators in one object: settings, clock, sessions, transport, caches."""

from __future__ import annotations

import datetime as dt
import gc
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, NullPool, create_engine
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import Clock, clock_from_setting
from engine.db import create_db_engine, create_read_session_factory, create_session_factory
from engine.errors import NotFound
from engine.faults import checkpoint_from_setting
from engine.graph import Graph
from engine.json_limits import JsonLimits
from engine.mail import Transport, transport_from_url
from engine.retry import RetryPolicy
from engine.settings import Settings
from engine.store import automations as automation_store
from engine.store import health as health_store

Checkpoint = Callable[[str], None]


def _no_checkpoint(name: str) -> None:
    return None


class Runtime:
    """Everything the engine's operations need, built once per process."""

    def __init__(
        self,
        settings: Settings,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        transport: Transport | None = None,
        checkpoint: Checkpoint = _no_checkpoint,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        # For requests that write nothing (the API's reads): see create_read_session_factory.
        self.read_sessions = create_read_session_factory(sessions)
        self.clock = clock
        self._transport = transport
        # Tests and fault injection pause execution at named points to force interleavings.
        self.checkpoint = checkpoint
        self.retry_policy = RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            base=dt.timedelta(seconds=settings.retry_base_seconds),
            cap=dt.timedelta(seconds=settings.retry_max_seconds),
        )
        self.horizon = dt.timedelta(seconds=settings.countdown_horizon_seconds)
        self.lease = dt.timedelta(seconds=settings.step_lease_seconds)
        self.json_limits = JsonLimits(settings.max_payload_depth, settings.max_payload_bytes)
        self._graphs: dict[uuid.UUID, Graph] = {}

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = transport_from_settings(self.settings)
        return self._transport

    def graph(self, session: Session, version_id: uuid.UUID) -> Graph:
        """The graph of an automation version; versions never change, so they are cached."""
        graph = self._graphs.get(version_id)
        if graph is None:
            data = automation_store.version_graph(session, version_id)
            if data is None:
                raise NotFound(f"Automation version {version_id} not found")
            if len(self._graphs) >= 4096:
                self._graphs.clear()
            graph = self._graphs[version_id] = Graph.from_dict(data, version_id=version_id)
        return graph

    def secret(self) -> str:
        return self.settings.secret_key.get_secret_value()


def transport_from_settings(settings: Settings) -> Transport:
    key = settings.email_api_key
    return transport_from_url(
        settings.email_transport_url, api_key=key.get_secret_value() if key else None
    )


def create_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    transport: Transport | None = None,
    checkpoint: Checkpoint | None = None,
    pre_ping: bool = True,
) -> Runtime:
    db_engine = create_db_engine(
        settings.database_url,
        pre_ping=pre_ping,
        prepared_statements=settings.database_pooling == "session",
    )
    if checkpoint is None:
        checkpoint = (
            checkpoint_from_setting(settings.fault_injection)
            if settings.fault_injection
            else _no_checkpoint
        )
    return Runtime(
        settings,
        sessions=create_session_factory(db_engine),
        clock=clock or _clock(settings, db_engine),
        # Built now so that a bad transport URL stops the process at start, not at first send.
        transport=transport or transport_from_settings(settings),
        checkpoint=checkpoint,
    )


def _clock(settings: Settings, db_engine: Engine) -> Clock:
    reader = _server_clock_reader(db_engine) if settings.clock == "database" else None
    return clock_from_setting(settings.clock, reader)


def _server_clock_reader(db_engine: Engine) -> Callable[[], dt.datetime] | None:
    """How to read the database server's clock, or None where it is this host's (SQLite).

    Each reading opens a connection of its own and closes it: none is pooled for it, so none
    can outlive a fork (a Celery worker's parent reads it too).
    """
    if db_engine.dialect.name != "postgresql":
        return None
    # A connection that cannot be made gives up: the last reading stands meanwhile.
    reader = create_engine(db_engine.url, poolclass=NullPool, connect_args={"connect_timeout": 5})

    def read() -> dt.datetime:
        with Session(reader) as session:
            return health_store.server_now(session)

    return read


# Allocations between two collections of the youngest generation (Python's default is 700).
# An ingestion of 100 events allocates tens of thousands of objects: at 700, 15 to 20% of its
# CPU went to the collector (bench/profile_ingest.py with gc.callbacks timing it); with the
# start-up's objects frozen and this threshold, 5 to 7%. Cyclic garbage waits a little longer.
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_process() -> None:
    """A process's start-up is over (the API server's app built, a worker's runtime): what it
    built lives as long as the process, out of the collector's sight (a full collection no
    longer walks the modules, routes and models: about 90 ms on a busy 2-core machine), and the
    young generation is collected less often. Forked children share the frozen objects' pages.
    """
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, oldest)
