"""wiring.worker's Celery app, as bench.latency's workers run it: each send_email task also
notes when it returned, its outcome committed: the end of the latency's `record` stage.

No column can hold the time of the commit that writes it, so the moment is taken here, in the
worker's own process, once the task is over: a line `run_id step_key epoch-seconds` appended to
a file of the process's own in the directory that bench.latency names (nothing without it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery.signals import task_postrun

from bench.latency_stages import RETURNS_ENV
from models.enums import StepType
from tasks.dispatcher import step_task_name
from wiring.worker import app

__all__ = ["app"]

_SEND_EMAIL = step_task_name(StepType.SEND_EMAIL)


def note_return(sender: Any = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    """Append when a send_email task returned (Celery's task_postrun, after its commit)."""
    returned = time.time()  # the wall clock the engine's SystemClock reads
    directory = os.environ.get(RETURNS_ENV)
    if not directory or sender is None or sender.name != _SEND_EMAIL:
        return
    call = dict(zip(("run_id", "step_key"), args or (), strict=False))
    call.update(kwargs or {})
    with (Path(directory) / f"{os.getpid()}.txt").open("a") as out:
        out.write(f"{call.get('run_id')} {call.get('step_key')} {returned!r}\n")


task_postrun.connect(note_return, weak=False)
