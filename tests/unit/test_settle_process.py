"""A process whose start-up is over freezes what it built and collects its young objects less
often (engine/runtime.py's settle_process): checked in a process of its own."""

from __future__ import annotations

import subprocess
import sys

from engine.runtime import YOUNG_COLLECTION_THRESHOLD

PROBE = """
import gc
from engine.runtime import settle_process
before = gc.get_threshold()
settle_process()
print(gc.get_freeze_count() > 1000, gc.get_threshold()[0], gc.get_threshold()[1:] == before[1:])
"""


def test_settle_process_freezes_the_start_up_and_raises_the_young_threshold() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["True", str(YOUNG_COLLECTION_THRESHOLD), "True"]
