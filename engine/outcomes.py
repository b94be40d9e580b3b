"""What a step's execution decided, before it is recorded."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from models.enums import ConnectionType, SkipReason

if TYPE_CHECKING:
    from engine.store.core import Carried


@dataclass(frozen=True)
class Completed:
    branch: ConnectionType = ConnectionType.DEFAULT
    output: dict[str, Any] = field(default_factory=dict)
    # A write of the step's not yet made (a contact's change, a new member of a segment), for
    # the statement that records the step's end to carry (progress.record_outcome).
    carried: Carried | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Failed:
    message: str
    code: str
    output: dict[str, Any] | None = None


@dataclass(frozen=True)
class Skipped:
    reason: SkipReason
    # The branch the run goes on with; None ends the run here.
    branch: ConnectionType | None = ConnectionType.DEFAULT
    output: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Waiting:
    """Park the step until `due_at` (a delay, or a wait's timeout; None waits without end)."""

    due_at: dt.datetime | None
    output: dict[str, Any] = field(default_factory=dict)
    wait_event: str | None = None


@dataclass(frozen=True)
class Retry:
    """Run the step again at `due_at` after a transient failure."""

    due_at: dt.datetime
    message: str
    code: str


Outcome = Completed | Failed | Skipped | Waiting | Retry
