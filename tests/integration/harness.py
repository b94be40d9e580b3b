"""The integration stack: a database, Redis, a real Celery worker process and an SMTP sink."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from psycopg.errors import DeadlockDetected
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from bench.children import ends_with_this_process
from engine import sweeper
from engine.clock import OffsetFileClock
from engine.db import create_schema, drop_schema, transaction
from engine.dispatch import Dispatcher, commit_then_dispatch
from engine.faults import checkpoint_from_setting
from engine.ingest import Ingested, ingest_event
from engine.runtime import Runtime, create_runtime
from engine.settings import Settings
from migrations import stamp
from models.enums import RUN_TERMINAL
from models.tables import Base, OutboxEmail, Run, RunStep
from tasks.app import create_celery_app
from tasks.dispatcher import CeleryDispatcher
from tasks.local import LocalExecutor
from tests.patience import patience

ROOT = Path(__file__).resolve().parents[2]
# httpx builds an SSL context for every client, reading certifi's bundle: about 20 ms of CPU,
# for clients that talk plain HTTP to a local server, one or more per test. Built once instead.
SSL_CONTEXT = httpx.create_ssl_context()


def answers(url: str, status: int = 200, *, timeout: float = 1) -> bool:
    """Whether `url` answers `status` now (False while nothing listens): a readiness poll."""
    try:
        return httpx.get(url, timeout=timeout, verify=SSL_CONTEXT).status_code == status
    except httpx.HTTPError:
        return False


# Ports this process has handed out. The kernel may give a port just let go to the next
# bind(("127.0.0.1", 0)): two callers that probe before either binds could get the same one.
_HANDED_OUT: set[int] = set()
_HANDING = threading.Lock()


def free_port() -> int:
    """A port nothing listens on now, and not handed out before by this process."""
    with _HANDING:
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port


@contextmanager
def serving(app: Any) -> Iterator[int]:
    """The app under uvicorn on a free port, in a thread of this process."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + patience(10)
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running.started
    yield port
    running.should_exit = True
    thread.join(timeout=10)


@dataclass(frozen=True)
class Envelope:
    rcpt_tos: list[str]
    raw: bytes


class SmtpSink:
    """An in-process SMTP server that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        # The To header of each message `to` has seen, as text. The sink keeps a whole session's
        # mail (one bulk test sends a thousand) and `to` is asked for one address at a time, in
        # loops: parsing every message's header at every call made the session quadratic.
        self._recipients: list[str] = []
        # What came over the wire: the RCPT TO addresses and the bytes of DATA, unparsed.
        self.envelopes: list[Envelope] = []
        self._lock = threading.Lock()
        # recipient -> (SMTP reply, how many more times to give it instead of accepting)
        self._refusals: dict[str, tuple[str, int]] = {}
        # Seconds DATA waits before it is answered (a slow SMTP server), 0 for none.
        self.slowness = 0.0
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    def refuse(self, address: str, reply: str, times: int) -> None:
        """Answer `reply` (e.g. "451 try later") to the next `times` messages for `address`."""
        with self._lock:
            self._refusals[address] = (reply, times)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.slowness:
            await asyncio.sleep(self.slowness)
        with self._lock:
            for address in envelope.rcpt_tos:
                reply, times = self._refusals.get(address, ("", 0))
                if times > 0:
                    self._refusals[address] = (reply, times - 1)
                    return reply
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append(Envelope(list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.controller.port}"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        with self._lock:
            for message in self.messages[len(self._recipients) :]:
                self._recipients.append(str(message["To"]))
            return [
                m for m, to in zip(self.messages, self._recipients, strict=True) if address in to
            ]

    def envelopes_for(self, address: str) -> list[Envelope]:
        """Every delivery whose envelope or raw headers name the address."""
        needle = address.encode()
        with self._lock:
            return [e for e in self.envelopes if address in e.rcpt_tos or needle in e.raw]


@dataclass
class Stack:
    backend: str
    settings: Settings
    runtime: Runtime
    clock: OffsetFileClock
    sink: SmtpSink
    workdir: Path
    worker: subprocess.Popen[bytes] | None = None
    worker_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app = create_celery_app(self.settings, runtime=self.runtime)
        self.local: LocalExecutor | None = None
        self.dispatcher: Dispatcher = CeleryDispatcher(self.app)
        if self.embedded:
            self.local = LocalExecutor(self.runtime, threads=2)
            self.dispatcher = self.local

    @property
    def embedded(self) -> bool:
        """No broker, no worker process: steps run on threads of this process."""
        return self.backend == "embedded"

    # -- processes ---------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.settings.process_environment(), **extra}

    def start_worker(self, *args: str, **extra_env: str) -> None:
        """The worker, with `args` added to its celery command line."""
        if self.local is not None:
            self.local.start()
            return
        log = (self.workdir / f"worker-{self.backend}.log").open("ab")
        name = f"test-{self.backend}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "wiring.worker",
                "worker",
                "-Q",
                "automations,automations.sweeper",
                "-c",
                "2",
                "--pool",
                "prefork",
                "-n",
                name,
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                *args,
            ],
            cwd=ROOT,
            preexec_fn=ends_with_this_process(),
            env=self.env(**{"AUTOMATIONS_FAULT_INJECTION": f"@{self.fault_plan}", **extra_env}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + patience(30)
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise RuntimeError(f"worker exited early, see {log.name}")
            # Addressed to this worker, the ping returns at its answer, not after the timeout,
            # and a worker still stopping (restart_worker) cannot answer for it.
            if self.app.control.ping(destination=[name], timeout=0.5):
                return
        raise RuntimeError(f"worker did not answer a ping in {patience(30):g} s, see {log.name}")

    @property
    def fault_plan(self) -> Path:
        """The file the worker reads its faults from (`engine/faults.py`), unless it was started
        with a plan of its own."""
        return self.workdir / f"faults-{self.backend}.plan"

    @contextmanager
    def faults(self, plan: str) -> Iterator[None]:
        """The worker's processes reach `plan`'s checkpoints (AUTOMATIONS_FAULT_INJECTION's
        items) until the block ends, with no restart: a pool process killed by one is replaced
        by its parent, which reads the plan as well. This process's runtime has no faults."""
        if self.local is not None:
            raise RuntimeError("the embedded stack's steps run in this process: no fault plan")
        checkpoint_from_setting(plan)  # a mistyped plan fails here, not in the worker
        self._write_fault_plan(plan)
        try:
            yield
        finally:
            self._write_fault_plan("")

    def _write_fault_plan(self, plan: str) -> None:
        # Written beside, then renamed over: the worker reads a whole plan, never half of one.
        draft = self.fault_plan.with_suffix(".draft")
        draft.write_text(plan)
        draft.replace(self.fault_plan)

    def stop_worker(self) -> None:
        if self.local is not None:
            self.local.stop()
            return
        if self.worker is None:
            return
        self.worker.terminate()
        self._reap(self.worker)
        self.worker = None

    @staticmethod
    def _reap(worker: subprocess.Popen[bytes]) -> None:
        """Wait for a worker told to stop (SIGTERM) to exit; kill it if it does not."""
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    def restart_worker(self, *args: str, **extra_env: str) -> None:
        """A new worker (`start_worker`'s arguments) in place of the running one, which is gone
        when this returns."""
        if self.local is not None or self.worker is None:
            self.stop_worker()
            self.start_worker(*args, **extra_env)
            return
        # The old worker's warm shutdown (its pool's joins, about 2 s) overlaps the new one's
        # start instead of coming before it. Stopping, it takes no new message and puts the
        # ones it holds back on the queue, as it would with no other worker running.
        old, self.worker = self.worker, None
        old.terminate()
        try:
            self.start_worker(*args, **extra_env)
        finally:
            self._reap(old)

    def use_inline_steps(self, count: int) -> None:
        """Run with AUTOMATIONS_INLINE_STEPS=count from now on (0: one message per step)."""
        if count == self.settings.inline_steps:
            return
        self.settings = self.settings.model_copy(update={"inline_steps": count})
        self.runtime.settings = self.settings  # the embedded executor reads it from here
        if not self.embedded:
            self.restart_worker()

    # -- state -------------------------------------------------------------------------------

    def reset_database(self) -> None:
        db_engine = self.runtime.sessions.kw["bind"]
        tables = list(reversed(Base.metadata.sorted_tables))
        names = ", ".join(t.name for t in tables)
        # automations <-> automation_versions reference each other (the one use_alter key):
        # cut that link first, then children go before parents.
        unlink = [
            f"UPDATE {t.name} SET {', '.join(c.name for c in fk.columns)} = NULL"
            for t in tables
            for fk in t.foreign_key_constraints
            if fk.use_alter
        ]
        deletes = [f"DELETE FROM {t.name}" for t in tables]
        if db_engine.dialect.name == "postgresql":
            # DELETE, not TRUNCATE: TRUNCATE gives every table and index a new file and syncs
            # them all at commit, about 0.4 s per test against a few ms for these small tables.
            # The EXCLUSIVE lock waits for the worker's writing transactions to end and keeps
            # new ones out until the tables are empty, as TRUNCATE's lock did. The worker may
            # hold these locks in another order (a sweep): PostgreSQL then fails one of the two,
            # and the reset, rolled back whole, is tried again.
            for attempt in range(5):
                try:
                    with db_engine.begin() as conn:
                        conn.execute(text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))
                        for statement in unlink + deletes:
                            conn.execute(text(statement))
                    return
                except OperationalError as exc:
                    if not isinstance(exc.orig, DeadlockDetected) or attempt == 4:
                        raise
        with db_engine.begin() as conn:
            # automations <-> automation_versions reference each other: check at commit.
            conn.execute(text("PRAGMA defer_foreign_keys = ON"))
            for statement in deletes:
                conn.execute(text(statement))

    def send(self, event: str, email: str, payload: dict[str, Any] | None = None) -> Ingested:
        return commit_then_dispatch(
            transaction(self.runtime.sessions),
            self.dispatcher,
            lambda session: ingest_event(
                session,
                self.runtime,
                event=event,
                email=email,
                payload=payload,
                now=self.clock.now(),
            ),
        )

    def sweep(self) -> int:
        return sweeper.tick(self.runtime, self.dispatcher)

    def advance(self, delta: dt.timedelta) -> None:
        """Move the shared clock forward and let the sweeper promote what became due."""
        self.clock.advance(delta)
        self.sweep()

    def run(self, run_id: uuid.UUID) -> Run:
        with transaction(self.runtime.sessions) as session:
            run = session.get(Run, run_id)
            assert run is not None
            return run

    def steps(self, run_id: uuid.UUID) -> dict[str, RunStep]:
        with transaction(self.runtime.sessions) as session:
            rows = session.scalars(select(RunStep).where(RunStep.run_id == run_id))
            return {row.step_key: row for row in rows}

    def outbox(self, run_id: uuid.UUID) -> list[OutboxEmail]:
        with transaction(self.runtime.sessions) as session:
            return list(session.scalars(select(OutboxEmail).where(OutboxEmail.run_id == run_id)))

    def wait_for(self, predicate: Any, *, timeout: float = 20, what: str = "condition") -> None:
        deadline = time.monotonic() + patience(timeout)
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {patience(timeout):g} s waiting for {what}")

    def wait_step(
        self, run_id: uuid.UUID, key: str, *statuses: str, timeout: float = 20
    ) -> RunStep:
        def reached() -> bool:
            step = self.steps(run_id).get(key)
            return step is not None and step.status in statuses

        self.wait_for(reached, timeout=timeout, what=f"step {key} in {statuses}")
        return self.steps(run_id)[key]

    def wait_run(self, run_id: uuid.UUID, *, timeout: float = 20) -> Run:
        self.wait_for(
            lambda: self.run(run_id).status in RUN_TERMINAL, timeout=timeout, what="run to end"
        )
        return self.run(run_id)

    def sweep_until_ended(self, run_id: uuid.UUID, *, timeout: float = 60) -> Run:
        """Tick the sweeper until the run ends, as its beat would. One tick is not enough after
        a process was killed inside a transaction: the tick skips the rows it still locks
        (SKIP LOCKED) until PostgreSQL has seen the connection drop and rolled it back."""

        def ended() -> bool:
            self.sweep()
            return self.run(run_id).status in RUN_TERMINAL

        self.wait_for(ended, timeout=timeout, what="run to end")
        return self.run(run_id)


def build_stack(
    backend: str, database_url: str, broker_url: str, workdir: Path, sink: SmtpSink
) -> Stack:
    clock_file = workdir / f"clock-{backend}"
    clock_file.write_text("0")
    settings = Settings(
        env="test",
        database_url=database_url,
        broker_url=broker_url,
        secret_key="test-secret-key-not-for-production",  # type: ignore[arg-type]
        email_transport_url=sink.url,
        clock=f"file:{clock_file}",
        stale_after_seconds=3,
        # Re-sends of a lost step wait 3 s, 6 s, then 12 s: recovery within one test's patience.
        redispatch_backoff_max_seconds=12,
        step_lease_seconds=10,
        retry_base_seconds=1,
        retry_max_attempts=3,
    )
    clock = OffsetFileClock(clock_file)
    runtime = create_runtime(settings, clock=clock)
    db_engine = runtime.sessions.kw["bind"]
    drop_schema(db_engine)
    create_schema(db_engine)
    # The models are the head migration's schema (tests/integration/test_migrations.py): say
    # so, as an operator's command checks it before touching the database.
    stamp(database_url)
    return Stack(backend, settings, runtime, clock, sink, workdir)


API_KEY = "re_test_bootstrap_key_0123456789"


class ApiServer:
    """uvicorn serving the API in its own process, as an operator starts it."""

    def __init__(self, stack: Stack, *, root_path: str = "") -> None:
        self.stack = stack
        # uvicorn's --root-path: the server sits behind a proxy at this prefix, which the
        # proxy takes off before passing requests on.
        self.root_path = root_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **extra_env: str) -> None:
        log = (self.stack.workdir / "api.log").open("ab")
        env = self.stack.env(AUTOMATIONS_API_KEY=API_KEY, **extra_env)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "wiring.server:create",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *(["--root-path", self.root_path] if self.root_path else []),
            ],
            cwd=ROOT,
            preexec_fn=ends_with_this_process(),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + patience(30)
        with httpx.Client(base_url=self.base_url, timeout=1, verify=SSL_CONTEXT) as probe:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"API server exited early, see {log.name}")
                try:
                    if probe.get("/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    time.sleep(0.1)
        raise RuntimeError(f"API server did not answer in {patience(30):g} s, see {log.name}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def client(self, api_key: str | None = API_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10, verify=SSL_CONTEXT)
