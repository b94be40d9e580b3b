"""Deadlines for what takes wall time, stretched on a slow host.

A test waits for a worker to start, a run to end, a process to die: each deadline is what a
reference core needs with a wide margin (one that does 10,000,000 Python additions in 0.5 s).
Hosts here have taken up to 4 s for them, and a suite written to the reference's clock failed
there on waits, not on behaviour. So every such wait, and pytest's per-test timeouts
(tests/conftest.py), are stretched by this host's factor: `AUTOMATIONS_TEST_PATIENCE` if set,
else measured once, by the session's first process, which hands it to its xdist workers and
the processes they start through that variable. Never below 1: a fast host waits as written,
so a wait stretched here never hides a hang (pytest's timeout is stretched alike) and never
makes a fast host slower.

Only waits for something to happen are stretched; a test's own pacing (a rate limiter's
window, a delay under test) is the system's clock, not the host's speed, and is not.
"""

from __future__ import annotations

import os
import time

VARIABLE = "AUTOMATIONS_TEST_PATIENCE"

# The reference core's time for the calibration loop (200,000 additions to a local: 3 ms where
# 10,000,000 to a module's global take 0.5 s), and the most a host is granted.
REFERENCE_SECONDS = 0.003
MOST = 8.0


def _calibrate() -> float:
    """The best of several short runs: the host's speed, not a moment's load."""

    def once() -> float:
        began = time.perf_counter()
        total = 0
        for i in range(200_000):
            total += i
        return time.perf_counter() - began

    return min(once() for _ in range(7)) / REFERENCE_SECONDS


def factor() -> float:
    """This host's factor, measured on the first call of the session and exported."""
    given = os.environ.get(VARIABLE)
    if given is None:
        given = f"{min(MOST, max(1.0, _calibrate())):.1f}"
        os.environ[VARIABLE] = given
    try:
        value = float(given)
    except ValueError:
        raise ValueError(f"{VARIABLE}={given!r}: a number of at least 1") from None
    if not 1 <= value <= MOST:
        raise ValueError(f"{VARIABLE}={given!r}: a number from 1 to {MOST:g}")
    return value


def patience(seconds: float) -> float:
    """How long to wait here for what takes `seconds` on the reference core, with margin."""
    return seconds * factor()
