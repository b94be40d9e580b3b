"""The long-lived processes a test or a benchmark starts die with the process that started them.

A test stops what it starts in its fixtures' teardown, and a benchmark in its own cleanup, which
a process killed (CI's timeout, a developer's Ctrl-\\ or `kill`) never reaches: a test's worker
went on consuming the test's Redis database and its API server kept its port, and the next
session's tests met them; the fault lab left its workers and its Redis server. Linux sends a
child a signal when the thread that forked it ends (PR_SET_PDEATHSIG): SIGTERM, so a worker
shuts down warm with its pool and a server closes its port. A thread's end would send it too,
so a process started from another thread (a supervisor's, a test's helper thread) is left as
it was.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
# Looked up here, in the parent: the child, between fork and exec, only calls it (a lookup
# there could wait forever on a lock another thread of the parent held at the fork).
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _ask_for_sigterm_when_the_parent_dies() -> None:
    # In the child, between fork and exec: the setting survives exec.
    assert _prctl is not None
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def ends_with_this_process() -> Callable[[], None] | None:
    """Popen's `preexec_fn` for a child to end with this process; None where it cannot."""
    if _prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    return _ask_for_sigterm_when_the_parent_dies
