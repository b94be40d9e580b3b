"""Messages the engine asks its adapter to send once the transaction has committed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Dispatch:
    """Execute this step of this run (after `countdown` seconds)."""

    run_id: uuid.UUID
    step_key: str
    step_type: str
    countdown: float = 0.0


@dataclass(frozen=True)
class BulkWork:
    """Work the next chunk of a bulk retry or replay."""

    bulk_id: uuid.UUID


Message = Dispatch | BulkWork


class Dispatcher(Protocol):
    def dispatch(self, dispatches: Sequence[Message]) -> None: ...

    def ping(self) -> None:
        """Raise unless messages can be delivered now."""


class NullDispatcher:
    """Sends nothing; the sweeper will find the steps. For tools that only write state."""

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        return None

    def ping(self) -> None:
        return None
