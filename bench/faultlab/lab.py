"""The stack a fault run drives: our Redis, our database, sinks, workers, a sweeper thread."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bench.faultlab.services import ConnectionCutter, PrivateRedis, ensure_database
from bench.faultlab.sinks import ResendStub, SmtpSink
from bench.faultlab.workers import WorkerPool
from engine import sweeper
from engine.clock import OffsetFileClock
from engine.db import create_schema, drop_schema
from engine.dispatch import Message
from engine.runtime import create_runtime
from engine.settings import Settings
from models.tables import Base
from tasks.app import create_celery_app
from tasks.dispatcher import STEP_QUEUE, CeleryDispatcher
from tasks.events import SEND
from tasks.fetch import GAVE_BACK_IN_FLIGHT, GAVE_BACK_UNACKED

log = logging.getLogger(__name__)
API_KEY = "re_faults_" + "0" * 24
# One worker killed right after a send (the provider has the email, we have no record of it),
# one right before.
SEND_CHECKPOINTS = ("send_email.after_send", "send_email.before_send")
# One worker killed between two instant steps it runs inline, one inside one (the first
# instant steps a worker meets are the inline run after the condition), one after its inline
# steps committed and before it publishes the step that follows them (a point reached only by
# a task execution that ran inline steps, whichever task the worker takes first).
INLINE_CHECKPOINTS = ("inline.before_step", "contact_update.handler", "inline.before_publish")


def worker_shapes(count: int) -> tuple[str, ...]:
    """Both shapes an operator runs (docs/operations.md, "Sizing the workers"): the first worker
    solo, the others prefork, so that every scenario kills and pauses both. A scenario with
    several checkpoints arms one slot per checkpoint from the first: the solo worker kills
    itself at the first, prefork ones at the others."""
    return tuple("solo" if slot == 0 else "prefork" for slot in range(count))


WORKER_SHAPES = worker_shapes(3)


# What a worker logs when it gives back the messages of dead ones (tasks/fetch.py).
def _counting(said: str) -> re.Pattern[str]:
    """A pattern for a log sentence that starts with a count (`%d`), up to its next figure."""
    words = said.split("%d", 1)[1].split("%", 1)[0]
    return re.compile(r"(\d+)" + re.escape(words))


# What the workers log when they gave back what dead ones held (tasks/fetch.py).
GIVEN_BACK = (_counting(GAVE_BACK_IN_FLIGHT), _counting(GAVE_BACK_UNACKED))


@dataclass(frozen=True)
class Timing:
    """Small leases and staleness, so that recovery takes seconds, not minutes."""

    lease_seconds: float = 3
    # Should exceed the load's longest queue backlog (a busy CI machine included): the sweeper
    # re-sends a step unclaimed for this long, queued or lost, then again after 2x, 4x... it.
    stale_seconds: float = 3
    # Caps that growing wait, so that a step whose re-sends were lost too is found in seconds.
    redispatch_max_seconds: float = 12
    sweep_every: float = 0.2
    # Each worker's heartbeat to Redis: a killed worker is found dead three of these after its
    # last, and the messages it held go back to their queues (the visibility timeout stays an
    # hour).
    broker_heartbeat_seconds: float = 1


class Lab:
    """Everything a scenario needs; built once, reset between scenarios."""

    def __init__(
        self,
        workdir: Path,
        postgres_url: str,
        database: str,
        *,
        workers: Sequence[str] = WORKER_SHAPES,
        timing: Timing | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.timing = timing or Timing()
        # Settings of the lab's processes beyond the timing (a short visibility timeout).
        self.overrides = dict(settings or {})
        self.redis = PrivateRedis(workdir)
        self.redis.start()
        self.sink = SmtpSink()
        self.sink.start()
        self.resend = ResendStub(API_KEY)
        self.resend.start()
        self.url = ensure_database(postgres_url, database)
        self.cutter = ConnectionCutter(self.url)
        clock_file = workdir / "clock"
        clock_file.write_text("0")
        self.clock = OffsetFileClock(clock_file)
        self.chaos_file = workdir / "chaos-on"
        self.chaos_count = workdir / "chaos-count"
        self.settings = self._settings("smtp")
        self.runtime = create_runtime(self.settings, clock=self.clock)
        db_engine = self.runtime.sessions.kw["bind"]
        drop_schema(db_engine)
        create_schema(db_engine)
        self.app = create_celery_app(self.settings, runtime=self.runtime)
        self.dispatcher = CeleryDispatcher(self.app)
        self.transport = "smtp"
        self.pool = WorkerPool(workdir, self._worker_env(), workers)
        self.pool.start()
        self.chaos = False
        self.markers = 0
        self.checkpoints: tuple[str, ...] = ()
        self.publish_errors = 0
        self.revived = 0
        self.queue_peak = 0
        self.queue_peak = 0  # the longest step queue seen: a flood of re-sends shows here
        self._broker = self.redis.client()
        self._logs_from: dict[Path, int] = {}
        self._stop_sweeping = threading.Event()
        self._sweeper: threading.Thread | None = None

    def _settings(self, transport: str) -> Settings:
        url = self.resend.url if transport == "resend" else self.sink.url
        values: dict[str, Any] = {
            "env": "test",
            "database_url": self.url,
            "broker_url": self.redis.url,
            "secret_key": "faults-secret-key-not-for-production",
            "email_transport_url": url,
            "email_api_key": API_KEY,
            "clock": f"file:{self.clock.path}",
            "stale_after_seconds": self.timing.stale_seconds,
            "redispatch_backoff_max_seconds": self.timing.redispatch_max_seconds,
            "step_lease_seconds": self.timing.lease_seconds,
            "broker_heartbeat_seconds": self.timing.broker_heartbeat_seconds,
            "retry_base_seconds": 1,
            "retry_max_attempts": 10,
        }
        return Settings(**{**values, **self.overrides})

    def _worker_env(self) -> dict[str, str]:
        env = self._settings(self.transport).process_environment()
        env["FAULTS_CHAOS_FILE"] = str(self.chaos_file)
        env["FAULTS_CHAOS_COUNT"] = str(self.chaos_count)
        return env

    # -- between scenarios ----------------------------------------------------------------

    def reset(self, *, transport: str, chaos: bool, checkpoints: tuple[str, ...] = ()) -> None:
        """Empty tables, broker and sinks; workers up with the transport the scenario wants."""
        # Worker n kills itself once at `checkpoints[n]`; one checkpoint arms every worker, and
        # the first to reach it dies (once: they share its marker).
        if self.redis.process is None:
            self.redis.start()
        # Workers still armed from the previous scenario are restarted unarmed.
        if transport != self.transport or checkpoints or self.pool.armed_env:
            self.pool.stop()
            self.transport = transport
            self.pool.env = self._worker_env()
        self.checkpoints = checkpoints
        self.pool.armed_env = {}
        if checkpoints:
            self.markers += 1
            armed = checkpoints * self.pool.count if len(checkpoints) == 1 else checkpoints
            for slot, point in enumerate(armed):
                marker = self.workdir / f"killed-{self.markers}-{point}"
                self.pool.armed_env[slot] = {
                    "AUTOMATIONS_FAULT_INJECTION": f"{point}=kill@{marker}"
                }
        self.pool.start()
        self.pool.resume_stopped()
        self._truncate()
        self.redis.flushall()
        self.sink.clear()
        self.resend.clear()
        self.chaos_count.write_bytes(b"")
        self.set_chaos(chaos)
        self.publish_errors = 0
        self.revived = 0
        self.queue_peak = 0
        self._logs_from = {path: path.stat().st_size for path in self._worker_logs()}

    def _worker_logs(self) -> list[Path]:
        return sorted(self.workdir.glob("worker-*.log"))

    def given_back(self) -> tuple[int, int]:
        """Messages the workers gave back from dead ones since the reset, from their logs:
        (taken and not yet recorded, unacknowledged)."""
        counts = [0, 0]
        for path in self._worker_logs():
            with path.open("rb") as lines:
                lines.seek(self._logs_from.get(path, 0))
                for line in lines.read().decode(errors="replace").splitlines():
                    for kind, pattern in enumerate(GIVEN_BACK):
                        if found := pattern.search(line):
                            counts[kind] += int(found.group(1))
        return counts[0], counts[1]

    def _truncate(self) -> None:
        names = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
        for attempt in range(3):
            try:
                with self.runtime.sessions.kw["bind"].begin() as conn:
                    conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                    conn.execute(text(f"TRUNCATE {names} CASCADE"))
                return
            except DBAPIError:
                if attempt == 2:
                    raise
                # A session of ours still holds a lock (a worker mid-transaction): cut it.
                log.warning("TRUNCATE waited on a lock; cutting our database's sessions")
                self.cutter.cut()

    def set_chaos(self, on: bool) -> None:
        self.chaos = on
        if on:
            self.chaos_file.touch()
        else:
            self.chaos_file.unlink(missing_ok=True)

    def checkpoint_kills(self) -> dict[str, int]:
        """How many workers killed themselves at each checkpoint of this scenario."""
        return {
            point: len(list(self.workdir.glob(f"killed-{self.markers}-{point}")))
            for point in self.checkpoints
        }

    def chaos_messages(self) -> int:
        return self.chaos_count.stat().st_size if self.chaos_count.exists() else 0

    # -- doorbells ------------------------------------------------------------------------

    def publish(self, dispatches: Sequence[Message]) -> None:
        """Send after commit; a failure is left to the sweeper, as in production."""
        batch = list(dispatches)
        if self.chaos and batch:
            # Every message twice, the batch backwards: order and uniqueness are not promised.
            batch = list(reversed(batch)) + batch
            with self.chaos_count.open("ab") as counter:
                counter.write(b"." * (len(batch) // 2))
        try:
            self.dispatcher.dispatch(batch)
        except Exception:  # the broker is down or wiped: the sweeper re-sends from the database
            self.publish_errors += 1
            log.debug("publish failed", exc_info=True)

    def enqueue(self, event: str, sends: Sequence[tuple[str, str]]) -> None:
        """As a producer on the broker does: one `automations.events.send` message per
        (email, idempotency key), its event's only copy until a worker ingests it."""
        with self.app.producer_or_acquire() as producer, producer.batch():
            for email, key in sends:
                kwargs = {"event": event, "email": email, "idempotency_key": key}
                self.app.send_task(SEND, kwargs=kwargs, queue=STEP_QUEUE, producer=producer)

    def sweep_once(self) -> int:
        """A sweeper tick (`engine.sweeper.tick`), its messages sent through `publish`."""
        return sweeper.tick(self.runtime, self)

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        """The Dispatcher the sweeper sends through: `publish`."""
        self.publish(dispatches)

    def ping(self) -> None:
        return None

    def start_sweeper(self) -> None:
        self.stop_sweeper()  # never two sweepers, even after a scenario that failed midway
        self._stop_sweeping.clear()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="sweeper", daemon=True)
        self._sweeper.start()

    def _sweep_loop(self) -> None:
        while not self._stop_sweeping.wait(self.timing.sweep_every):
            # The scheduler's tick and the workers' supervisor, in one loop.
            self.revived += self.pool.revive()
            try:
                self.queue_peak = max(self.queue_peak, int(self._broker.llen("automations")))
            except Exception:  # Redis down or restarting: the gauge skips a tick
                log.debug("queue length unknown", exc_info=True)
            try:
                self.sweep_once()
            except Exception:  # a cut connection or a broker outage: the next tick retries
                log.debug("sweep failed", exc_info=True)

    def stop_sweeper(self) -> None:
        self._stop_sweeping.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)
            self._sweeper = None

    def close(self) -> None:
        self.stop_sweeper()
        self.pool.stop()
        self.sink.stop()
        self.resend.stop()
        self.redis.stop()
        self.cutter.close()
        self.runtime.sessions.kw["bind"].dispose()
