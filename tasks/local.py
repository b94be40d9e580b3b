"""The embedded executor: steps run on threads of this process, no broker at all.

It stands in for Celery in `automations dev`: dispatches go to an in-memory queue (countdowns to
a timer heap), and the sweeper polls the database as it does in production. Correctness never
rests on the queue: a dispatch lost with the process is found again by the sweeper, because the
database says what is due.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Sequence

from engine import lifecycle, sweeper
from engine.bulk import work_chunk
from engine.dispatch import BulkWork, CancelWork, Dispatch, Message
from engine.executor import execute_step
from engine.runtime import Runtime

log = logging.getLogger(__name__)


class LocalExecutor:
    """A Dispatcher that executes what it is given on its own worker threads."""

    def __init__(self, rt: Runtime, *, threads: int = 2) -> None:
        self.rt = rt
        self.threads = threads
        self._ready: queue.Queue[Message] = queue.Queue()
        self._timers: list[tuple[float, int, Dispatch]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        for item in dispatches:
            if isinstance(item, Dispatch) and item.countdown > 0:
                with self._lock:
                    ready_at = time.monotonic() + item.countdown
                    heapq.heappush(self._timers, (ready_at, next(self._order), item))
            else:
                self._ready.put(item)

    def ping(self) -> None:
        if not self._workers or not all(thread.is_alive() for thread in self._workers):
            raise RuntimeError("the embedded executor is not running")

    def start(self) -> None:
        self._stop.clear()
        self._workers = [
            threading.Thread(target=self._work, name=f"step-worker-{n}", daemon=True)
            for n in range(self.threads)
        ]
        self._workers.append(threading.Thread(target=self._schedule, name="sweeper", daemon=True))
        for thread in self._workers:
            thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout)
        self._workers = []

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._ready.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                if isinstance(item, BulkWork):
                    self.dispatch(work_chunk(self.rt, item.bulk_id))
                elif isinstance(item, CancelWork):
                    self.dispatch(lifecycle.work_cancel(self.rt, item.automation_id))
                else:
                    # The claim commits before the step runs: were the step to kill this
                    # process, the next start counts the death (engine/worker_loss.py).
                    done = execute_step(
                        self.rt, item.run_id, item.step_key, item.step_type, claim_apart=True
                    )
                    self.dispatch(done)
            except Exception:
                # The transaction rolled back; the sweeper will offer the work again.
                log.exception("work failed", extra=_ids(item))

    def _schedule(self) -> None:
        interval = self.rt.settings.sweeper_interval_seconds
        next_sweep = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                while self._timers and self._timers[0][0] <= now:
                    self._ready.put(heapq.heappop(self._timers)[2])
            if now >= next_sweep:
                next_sweep = now + interval
                self.sweep_once()
            self._stop.wait(0.05)

    def sweep_once(self) -> int:
        """One sweeper tick; the number of steps it dispatched."""
        try:
            return sweeper.tick(self.rt, self)
        except Exception:
            # The next tick tries again: the database still says what is due.
            log.exception("sweeper tick failed")
            return 0


def _ids(item: Message) -> dict[str, str]:
    if isinstance(item, BulkWork):
        return {"bulk_id": str(item.bulk_id)}
    if isinstance(item, CancelWork):
        return {"automation_id": str(item.automation_id)}
    return {"run_id": str(item.run_id), "step_key": item.step_key}
