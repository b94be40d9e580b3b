"""A pool child's SIGTERM while a task runs waits for the task's end (tasks/child_shutdown.py)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from tasks import child_shutdown
from tasks.child_shutdown import ChildShutdown
from tests.patience import patience


@pytest.fixture
def stops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The pool's own SIGTERM handler, recording instead of exiting; restored after."""
    calls: list[int] = []

    def pool_handler(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    saved = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM)
    signal.signal(signal.SIGTERM, pool_handler)
    monkeypatch.setattr(child_shutdown, "AFTER_RESULT_SECONDS", 0.01)
    yield calls
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGTERM, saved[0])
    signal.signal(signal.SIGALRM, saved[1])


def wait_until(predicate: object, timeout: float = 2) -> None:
    deadline = time.monotonic() + patience(timeout)
    while time.monotonic() < deadline and not predicate():  # type: ignore[operator]
        time.sleep(0.005)


def test_a_sigterm_during_a_task_is_acted_on_after_it(stops: list[int]) -> None:
    guard = ChildShutdown(worker_pid=os.getppid())  # made in the worker, before the fork
    guard.in_pool_child()
    guard.task_started()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    assert stops == [], "held while the task runs"
    guard.task_ended()
    wait_until(lambda: stops)
    assert stops == [signal.SIGTERM]


def test_an_idle_child_stops_at_once(stops: list[int]) -> None:
    guard = ChildShutdown(worker_pid=os.getppid())  # made in the worker, before the fork
    guard.in_pool_child()
    guard.task_started()
    guard.task_ended()
    os.kill(os.getpid(), signal.SIGTERM)
    wait_until(lambda: stops)
    assert stops == [signal.SIGTERM]


def test_outside_a_pool_child_nothing_is_installed(stops: list[int]) -> None:
    guard = ChildShutdown()  # a solo worker, or the prefork parent
    guard.task_started()
    os.kill(os.getpid(), signal.SIGTERM)
    wait_until(lambda: stops)
    assert stops == [signal.SIGTERM]
    guard.task_ended()


def test_a_solo_workers_own_sigterm_is_not_held(stops: list[int]) -> None:
    """The solo pool sends `worker_process_init` in the worker's own process: Celery's warm
    shutdown there ends the task first by itself, and a SIGTERM held until no task ran was
    held for as long as messages came."""
    guard = ChildShutdown()  # made in this process, and told it is a pool child by the same
    guard.in_pool_child()
    guard.task_started()
    os.kill(os.getpid(), signal.SIGTERM)
    wait_until(lambda: stops)
    assert stops == [signal.SIGTERM]
    guard.task_ended()
