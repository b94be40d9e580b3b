"""Fault injection at named checkpoints, for tests and `bench/faults` (never set in production).

`AUTOMATIONS_FAULT_INJECTION="send_email.before_send=kill@/tmp/marker"` makes the process kill
itself with SIGKILL the first time it reaches that checkpoint: the marker file, created
exclusively, makes it happen once across restarts; `send_email.before_send=kill`, without a
marker, every time (a step that kills whatever runs it). `condition.handler=raise` raises an
unexpected exception every time the checkpoint is reached (a step handler with a bug).
`condition.handler=sleep@2` pauses 2 seconds there every time (a slow step, to stop a process
in the middle of one).

`AUTOMATIONS_FAULT_INJECTION="@/tmp/plan"` reads those items from a file instead, again each time
the file is replaced (write a new one and rename it over the old): a test switches the faults of
a running worker on and off without restarting it. No file, or an empty one, is no fault.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_once(marker: str) -> Callable[[], None]:
    def fire() -> None:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        _kill()

    return fire


class InjectedFault(RuntimeError):
    """The exception a `raise` fault throws: stands for any bug in a step."""


def _raise(point: str) -> Callable[[], None]:
    def fire() -> None:
        raise InjectedFault(f"fault injected at {point}")

    return fire


def _sleep(seconds: float) -> Callable[[], None]:
    def fire() -> None:
        time.sleep(seconds)

    return fire


def _seconds(text: str) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def checkpoint_from_setting(value: str) -> Callable[[str], None]:
    """A checkpoint callable from `point=kill@marker`, `point=raise` and `point=sleep@seconds`
    items, comma-separated, or from the file named after an `@`."""
    if value.startswith("@"):
        return _checkpoint_from_file(value.removeprefix("@"))
    return _checkpoint_from_items(value)


def _checkpoint_from_items(value: str) -> Callable[[str], None]:
    actions: dict[str, Callable[[], None]] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        point, _, action = item.partition("=")
        kind, _, marker = action.partition("@")
        if kind == "kill":
            actions[point] = _kill_once(marker) if marker else _kill
        elif kind == "raise" and not marker:
            actions[point] = _raise(point)
        elif kind == "sleep" and (seconds := _seconds(marker)) is not None:
            actions[point] = _sleep(seconds)
        else:
            raise ValueError(
                f"unknown fault {item!r}: expected point=kill@/path/to/marker, point=kill, "
                "point=raise or point=sleep@seconds (a positive number)"
            )

    def checkpoint(name: str) -> None:
        action = actions.get(name)
        if action is not None:
            action()

    return checkpoint


def _checkpoint_from_file(path: str) -> Callable[[str], None]:
    """Reads the items again when the file's identity changes: one `stat` per checkpoint."""
    if not path:
        raise ValueError("a fault plan file after @ is missing: expected @/path/to/plan")
    plan = Path(path)
    seen: tuple[int, int, int] | None = None
    current = _checkpoint_from_items("")

    def checkpoint(name: str) -> None:
        nonlocal seen, current
        try:
            stat = plan.stat()
            version: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            text = plan.read_text() if version != seen else None
        except FileNotFoundError:
            version, text = None, ""
        if version != seen:
            # A plan that does not parse raises here, in the step that reached the checkpoint.
            current, seen = _checkpoint_from_items(text or ""), version
        current(name)

    return checkpoint
