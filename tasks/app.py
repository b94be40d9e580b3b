"""The Celery app factory: durable settings, the step tasks, the sweeper on a beat schedule."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from celery import Celery, Task
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
)

from engine import lifecycle, sweeper
from engine.bulk import work_chunk
from engine.db import import_driver, retry_on_disconnect
from engine.executor import execute_step
from engine.logs import configure_logging
from engine.runtime import Runtime, create_runtime, settle_process
from engine.settings import ConfigurationError, Settings, check_url_port
from engine.step_types import all_specs
from tasks.broker import TRANSPORT
from tasks.child_shutdown import ChildShutdown
from tasks.dispatcher import (
    BULK_TASK,
    CANCEL_TASK,
    STEP_QUEUE,
    SWEEPER_QUEUE,
    VERSION_HEADER,
    CeleryDispatcher,
    step_task_name,
)
from tasks.events import register_event_tasks
from tasks.lost_workers import ClaimPolicy, StepRequest
from tasks.poison import CheckedTask, hinted_id, parse_id

log = logging.getLogger(__name__)

T = TypeVar("T")


class RuntimeHolder:
    """Builds the runtime lazily in each worker process, so no connection crosses a fork."""

    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self._runtime = runtime

    def get(self) -> Runtime:
        if self._runtime is None:
            # No ping per checkout: every task retries on a dropped connection instead
            # (engine.db.retry_on_disconnect), which saves a round trip per transaction.
            self._runtime = create_runtime(self.settings, pre_ping=False)
        return self._runtime

    def in_parent(self, work: Callable[[Runtime], T]) -> T:
        """`work` in a worker's parent process (a lost child's step counted), which forks
        children after it: its connections are closed once done, so that none is inherited."""
        rt = self.get()
        try:
            return work(rt)
        finally:
            rt.sessions.kw["bind"].dispose()

    def after_fork(self, **_: Any) -> None:
        if self._runtime is not None:
            # Connections inherited from the parent belong to it: drop them without closing.
            self._runtime.sessions.kw["bind"].dispose(close=False)
        # Built before the first task rather than by it (the database driver's import, the
        # engine, the transport): the first step does not wait for them. No connection yet.
        try:
            self.get()
        except Exception:
            log.exception("could not build the runtime; the first task will try again")
        settle_process()

    def before_fork(self, **_: Any) -> None:
        """Import the database driver once in the worker's parent, for every child it forks;
        what the parent built is frozen before the children share it."""
        import_driver(self.settings.database_url)
        settle_process()


class TickGate:
    """One sweeper tick per half interval in this process: the ticks beat queued while no
    worker took them (workers down, a long tick) are drained without a sweep each."""

    def __init__(self, interval: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._gap = interval / 2
        self._monotonic = monotonic
        self._last: float | None = None
        self._lock = threading.Lock()

    def opens(self) -> bool:
        with self._lock:
            now = self._monotonic()
            if self._last is not None and now - self._last < self._gap:
                return False
            self._last = now
            return True


def celery_config(settings: Settings) -> dict[str, Any]:
    """Our Celery settings; bench/raw_celery.py runs its baseline with the same ones."""
    check_url_port("AUTOMATIONS_BROKER_URL", settings.broker_url)
    if settings.countdown_horizon_seconds >= settings.visibility_timeout_seconds:
        raise ConfigurationError(
            "AUTOMATIONS_COUNTDOWN_HORIZON_SECONDS must be below "
            "AUTOMATIONS_VISIBILITY_TIMEOUT_SECONDS, or Redis redelivers waiting countdowns"
        )
    return {
        "broker_url": settings.broker_url,
        # Only plain redis:// (rediss:// keeps kombu's own, which sets up TLS from the scheme).
        "broker_transport": TRANSPORT if urlsplit(settings.broker_url).scheme == "redis" else None,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_seconds,
            # Each consumer's heartbeat, and its check for dead ones, whose messages go back
            # (tasks/fetch.py); kombu's visibility timeout is looked at every interval too,
            # not every tenth (kombu's default): back within timeout + one interval.
            "unacked_restore_interval": min(
                settings.broker_heartbeat_seconds, settings.visibility_timeout_seconds
            ),
            "unacked_restore_throttle": 1,
        },
        "broker_connection_retry_on_startup": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_default_queue": STEP_QUEUE,
        # Off by default: Flower's periodic enable_events turns them on while it watches.
        "worker_send_task_events": settings.task_events,
        # No "task-sent" event per message: it doubles what every publish costs, and Flower
        # follows tasks from the workers' events (received, started, succeeded) anyway.
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "automations-sweeper": {
                "task": "automations.sweeper.tick",
                "schedule": dt.timedelta(seconds=settings.sweeper_interval_seconds),
                # No `expires`: Celery makes it an absolute time from beat's clock and compares
                # it with the worker's, so a worker a few seconds ahead would drop every tick.
                # A backlog of ticks is drained by TickGate instead.
                "options": {"queue": SWEEPER_QUEUE},
            }
        },
    }


def create_celery_app(settings: Settings, runtime: Runtime | None = None) -> Celery:
    """A Celery app bound to these settings, with every task registered under a stable name."""
    # Every Celery process (worker, beat, flower) builds its app here: one check covers them.
    settings.check_production_ready()
    # Every task's messages are checked before Celery's strategy trusts them (tasks/poison.py).
    app = Celery("automations", set_as_current=False, task_cls=CheckedTask)
    app.conf.update(celery_config(settings))
    holder = RuntimeHolder(settings, runtime)
    worker_init.connect(holder.before_fork, weak=False)
    worker_process_init.connect(holder.after_fork, weak=False)
    # A pool child signalled with its parent (systemd, a process group) ends its step first.
    child_shutdown = ChildShutdown()
    worker_process_init.connect(child_shutdown.in_pool_child, weak=False)
    task_prerun.connect(child_shutdown.task_started, weak=False)
    task_postrun.connect(child_shutdown.task_ended, weak=False)

    def _logging(loglevel: int | str | None = None, **_: Any) -> None:
        # Celery passes the worker's -l/--loglevel (a number, or a name); INFO if none.
        level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
        configure_logging(json_lines=settings.log_json, level=level or "INFO")

    # Connected, this signal replaces Celery's own logging setup with ours (JSON if asked).
    setup_logging.connect(_logging, weak=False)
    claims = ClaimPolicy()
    worker_init.connect(claims.for_pool, weak=False)
    dispatcher = CeleryDispatcher(app)
    for spec in all_specs():
        _register_step_task(app, holder, dispatcher, claims, spec.name)

    gate = TickGate(settings.sweeper_interval_seconds)

    @app.task(name="automations.sweeper.tick", shared=False)
    def sweeper_tick() -> int:
        if not gate.opens():
            return 0
        return sweeper.tick(holder.get(), dispatcher)

    register_event_tasks(app, holder, dispatcher)

    # A chunk of a bulk retry or replay; the next chunk is a new message behind the queue.
    @app.task(name=BULK_TASK, shared=False)
    def bulk_chunk(bulk_id: str) -> None:
        parsed = parse_id(BULK_TASK, "bulk_id", bulk_id)
        if parsed is None:
            return
        rt = holder.get()
        dispatcher.dispatch(retry_on_disconnect(lambda: work_chunk(rt, parsed)))

    # A share of a stop's or a deletion's cancel of runs; the rest a new message behind the queue.
    @app.task(name=CANCEL_TASK, shared=False)
    def cancel_runs(automation_id: str) -> None:
        parsed = parse_id(CANCEL_TASK, "automation_id", automation_id)
        if parsed is None:
            return
        rt = holder.get()
        dispatcher.dispatch(retry_on_disconnect(lambda: lifecycle.work_cancel(rt, parsed)))

    app.runtime_holder = holder
    return app


def _register_step_task(
    app: Celery,
    holder: RuntimeHolder,
    dispatcher: CeleryDispatcher,
    claims: ClaimPolicy,
    step_type: str,
) -> None:
    name = step_task_name(step_type)

    # A pool child lost while running the step is counted in the parent (tasks/lost_workers.py).
    @app.task(name=name, shared=False, Request=StepRequest, bind=True)
    def run_step(task: Task, run_id: str, step_key: str) -> None:
        parsed = parse_id(name, "run_id", run_id)
        if parsed is None:
            return
        if not isinstance(step_key, str):
            log.error(
                "message refused (task %s): `step_key` is not a string: %.100r", name, step_key
            )
            return
        rt = holder.get()
        following = execute_step(
            rt,
            parsed,
            step_key,
            step_type,
            claim_apart=claims.apart,
            version_id=hinted_id(task.request.get(VERSION_HEADER)),
        )
        rt.checkpoint("dispatch.before_publish")
        dispatcher.dispatch(following)
