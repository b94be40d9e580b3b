"""bench/children.py: a process a test starts ends with the test process, killed or not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.children import ends_with_this_process
from tests.patience import patience

ROOT = Path(__file__).resolve().parents[2]

PARENT = """
import subprocess, sys, time
from bench.children import ends_with_this_process
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         preexec_fn=ends_with_this_process())
print(child.pid, flush=True)
time.sleep(120)
"""


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # ended, not yet reaped by its new parent


def test_a_child_ends_when_the_test_process_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert not gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + patience(10)
        while not gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(child)
    finally:
        if not gone(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_started_from_another_thread_is_not_tied_to_that_thread() -> None:
    # The signal follows the thread that forked: a helper thread's end would kill the child.
    found: list[object] = []
    thread = threading.Thread(target=lambda: found.append(ends_with_this_process()))
    thread.start()
    thread.join()
    assert found == [None]
