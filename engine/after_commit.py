"""Sending the messages of committed transactions, for callers answered by the commit (the
API's and the dashboard's requests).

What such a caller asked for is committed before its messages go out, and the sweeper sends
the steps of a committed transaction that were never published (after `stale_after_seconds`;
bulk work after its own check). So a caller's answer must not depend on the broker:

- A send that fails is logged, never raised. Raising would tell an HTTP caller that a request
  which took effect had failed, and a caller who sent it again, without an idempotency key,
  would start its runs twice.
- With Redis down, a send waits out the broker's connection retries (about 6 s). Before this,
  every request waited them out in turn: `POST /events/send` stopped accepting events (its one
  writer per process blocked), and the batches' sends filled the thread pool, `GET /health`
  with it. Now one send fails; from then on messages are left to the sweeper (counted, not
  logged one by one) until the broker answers a ping, tried after a pause of 0.5 s doubling up
  to 30 s, and the count is logged in one line when it is back.
- A caller that finds no other send on its way sends at once, in its own thread: an event's
  step reaches a worker as soon as it did before (a hand-over to a thread cost about 1 ms of
  bench.latency's event-to-email p50). A caller that finds one on its way does not wait
  behind it: its messages go to the process's sending thread, which sends what is queued in
  one round trip.

A process that dies with messages queued loses only doorbells: the sweeper sends their steps,
as after a crash between a commit and its publish.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from engine.dispatch import Dispatcher, Message

log = logging.getLogger(__name__)

# Messages in one send: as many as a group of events or a batch makes, a few times over.
MAX_SEND = 1000
# Queued messages past which new ones are left to the sweeper (the broker slower than the API).
MAX_QUEUED = 100_000
FIRST_PAUSE = 0.5
MAX_PAUSE = 30.0


class AfterCommit:
    """A dispatcher that never raises, and never has a caller wait behind another's send or
    for a broker known to be down."""

    def __init__(
        self,
        inner: Dispatcher,
        *,
        max_queued: int = MAX_QUEUED,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self._max_queued = max_queued
        self._sleep = sleep
        self._full_said = -MAX_PAUSE
        self._reset()
        _INSTANCES.add(self)

    def _reset(self) -> None:
        """A new state, with no thread: at start, and in a forked child (whose copy of the
        lock may have been held by a parent's thread that the child does not have)."""
        self._queue: deque[Message] = deque()  # a parent's queue is the parent's to send
        self._changed = threading.Condition()
        self._sending = 0  # sends on their way: a caller's own, or the thread's
        self._thread: threading.Thread | None = None
        self._down = False  # since a send failed, until a ping answers
        self._probe = False  # the thread is to wait for the broker's return
        self._left = 0  # messages left to the sweeper: the broker down, or the queue full

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        if not dispatches:
            return
        with self._changed:
            if self._down:  # counted, for the line that says the broker is back
                self._left += len(dispatches)
                return
            if self._sending or self._queue:  # not behind another send: the thread's to do
                self._enqueue(dispatches)
                return
            self._sending += 1
        # Nothing on its way: sent at once, in this thread (no hand-over to wait for).
        self._send(list(dispatches))

    def ping(self) -> None:
        self.inner.ping()

    def flush(self, timeout: float) -> bool:
        """Wait until what is queued now has been sent (or left to the sweeper); False if that
        took longer than `timeout`. Used at shutdown, and by tests."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._queue or self._sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def _enqueue(self, dispatches: Sequence[Message]) -> None:
        room = max(self._max_queued - len(self._queue), 0)
        if room < len(dispatches):
            self._left += len(dispatches) - room
            if time.monotonic() - self._full_said >= MAX_PAUSE:
                self._full_said = time.monotonic()
                log.warning(
                    "%d messages queued for the broker: new ones are left to the sweeper",
                    len(self._queue),
                )
        self._queue.extend(dispatches[:room])
        self._start()
        self._changed.notify_all()

    def _start(self) -> None:
        """The sending thread of this process, started when it first has work."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="after-commit", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._changed:
                # After the send on its way, if any: should it fail, what is queued is left to
                # the sweeper rather than tried against a broker that just failed.
                while (not self._queue or self._sending) and not self._probe:
                    self._changed.wait()
                if self._probe:
                    self._probe = False
                    batch = []
                else:
                    batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_SEND))]
                    self._sending += 1
            if batch:
                self._send(batch)
            else:
                self._wait_for_broker()

    def _send(self, batch: list[Message]) -> None:
        """Send, counted as on its way until done; a failure marks the broker down and has the
        thread wait for its return."""
        try:
            self.inner.dispatch(batch)
        except Exception:
            with self._changed:
                self._down, self._probe = True, True
                self._left += len(batch) + len(self._queue)
                self._queue.clear()
                self._start()
            log.error(
                "%d message(s) of committed transactions not sent; the sweeper sends them, and "
                "new ones until the broker answers again",
                len(batch),
                exc_info=True,
            )
        finally:
            with self._changed:
                self._sending -= 1
                self._changed.notify_all()

    def _wait_for_broker(self) -> None:
        """Ping after a pause (doubling up to MAX_PAUSE) until the broker answers."""
        pause, down_for = FIRST_PAUSE, 0.0
        while True:
            self._sleep(pause)
            down_for += pause
            try:
                self.inner.ping()
            except Exception as failed:
                pause = min(pause * 2, MAX_PAUSE)
                log.warning(
                    "the broker is still unreachable (%s); next try in %.1f s", failed, pause
                )
                continue
            break
        with self._changed:
            left, self._left, self._down = self._left, 0, False
        log.warning(
            "the broker answers again, after %.0f s or more; %d message(s) were left to the "
            "sweeper",
            down_for,
            left,
        )


_INSTANCES: weakref.WeakSet[AfterCommit] = weakref.WeakSet()


def _reset_in_child() -> None:
    for sender in list(_INSTANCES):
        sender._reset()


os.register_at_fork(after_in_child=_reset_in_child)


def after_commit(dispatcher: Dispatcher) -> AfterCommit:
    """`dispatcher` for callers answered by the commit; one that already is stays as it is."""
    return dispatcher if isinstance(dispatcher, AfterCommit) else AfterCommit(dispatcher)
