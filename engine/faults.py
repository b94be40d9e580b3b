"""Fault injection at named checkpoints, for tests and `bench/faults` (never set in production).

`AUTOMATIONS_FAULT_INJECTION="send_email.before_send=kill@/tmp/marker"` makes the process kill
itself with SIGKILL the first time it reaches that checkpoint: the marker file, created
exclusively, makes it happen once across restarts.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable


def _kill_once(marker: str) -> Callable[[], None]:
    def fire() -> None:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)

    return fire


def checkpoint_from_setting(value: str) -> Callable[[str], None]:
    """A checkpoint callable from `point=kill@marker[,point=kill@marker...]`."""
    actions: dict[str, Callable[[], None]] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        point, _, action = item.partition("=")
        kind, _, marker = action.partition("@")
        if kind != "kill" or not marker:
            raise ValueError(f"unknown fault {item!r}: expected point=kill@/path/to/marker")
        actions[point] = _kill_once(marker)

    def checkpoint(name: str) -> None:
        action = actions.get(name)
        if action is not None:
            action()

    return checkpoint
