"""A prefork pool child told to stop (SIGTERM) while it runs a task ends the task first.

The parent is the one that shuts a worker down: on SIGTERM it takes no new message and waits
for its children's tasks (a warm shutdown). But a supervisor may signal every process of the
worker at once (systemd's default `KillMode=control-group`, `kill -TERM -- -<pgid>`), and a child
that died of it mid-step abandoned the step: a send cut off in the middle, the step held by its
lease until the sweeper takes it over, and the death counted against the step as a worker loss
(`AUTOMATIONS_STEP_MAX_WORKER_LOSSES`), once per deploy. So a child defers a SIGTERM that comes
while a task runs: the task ends, its result reaches the parent, then the child stops as it
would have. An idle child stops at once. The parent's own ways to stop a child are unchanged in
effect: a cold shutdown's SIGTERM takes effect once the current step ends (a send is bounded by
the transport's timeout); SIGKILL, as ever, at once.

A solo worker sends `worker_process_init` too, from the worker's own process: there SIGTERM is
Celery's warm shutdown, which already ends the task first and puts the held messages back.
Deferred, it was acted on only once no task ran, and a solo worker with messages to run ran
every one of them first, ignoring SIGTERM for as long as they came.
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

# After the task's return, its result is written to the parent's pipe within microseconds;
# the deferred SIGTERM is acted on this long after, when the child waits for its next job.
AFTER_RESULT_SECONDS = 0.2


class ChildShutdown:
    """Counts the tasks running in this process and holds back a SIGTERM until none runs."""

    def __init__(self, worker_pid: int | None = None) -> None:
        self.running = 0
        self.deferred = False
        self._stop: Any = signal.SIG_DFL
        self._child = False
        self._installed = False
        # The worker's own process, where the app (and this) is made before the pool forks.
        self._worker_pid = os.getpid() if worker_pid is None else worker_pid

    def in_pool_child(self, **_: Any) -> None:
        """Celery's `worker_process_init`: this process is a pool child, unless it is the
        worker's own process (a solo pool's)."""
        self._child = os.getpid() != self._worker_pid

    def task_started(self, **_: Any) -> None:
        # Installed at the first task: the pool sets its own SIGTERM handler after the
        # child's initializer (billiard's reset_signals), and that handler is the one deferred.
        if self._child and not self._installed:
            self._installed = True
            self._stop = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_term)
            signal.signal(signal.SIGALRM, self._on_term)
        self.running += 1

    def task_ended(self, **_: Any) -> None:
        self.running = max(self.running - 1, 0)
        if self.deferred and not self.running:
            log.warning("the task is done: this pool process stops, as it was told (SIGTERM)")
            signal.setitimer(signal.ITIMER_REAL, AFTER_RESULT_SECONDS)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        if self.running:
            self.deferred = True  # no logging here: a signal handler may not take its lock
            return
        stop = self._stop
        if stop == signal.SIG_IGN:
            return
        if callable(stop):
            stop(signal.SIGTERM, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
