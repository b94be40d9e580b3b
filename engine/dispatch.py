"""Messages the engine asks its adapter to send once the transaction has committed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Dispatch:
    """Execute this step of this run (after `countdown` seconds).

    `claimed`: the step was created claimed (its first attempt) by the transaction that made
    it ready, for the process that committed it to execute inline (engine/executor.py). Such a
    step is never sent: no other process could claim it before its lease runs out.
    `version_id`: the run's automation version, where the sender knows it; a message names it
    for a step whose claim reads for it (StepTypeSpec.reads_on_claim).
    """

    run_id: uuid.UUID
    step_key: str
    step_type: str
    countdown: float = 0.0
    claimed: bool = False
    version_id: uuid.UUID | None = field(default=None, compare=False)  # a hint, not identity


@dataclass(frozen=True)
class BulkWork:
    """Work the next chunk of a bulk retry or replay."""

    bulk_id: uuid.UUID


@dataclass(frozen=True)
class CancelWork:
    """Cancel the next slices of a stopped or deleted automation's runs in flight."""

    automation_id: uuid.UUID


Message = Dispatch | BulkWork | CancelWork


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


class KeptDispatcher:
    """Keeps what it is given, for its caller to carry out in process (benchmarks, tests)."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        self.sent.extend(dispatches)

    def ping(self) -> None:
        return None


class Dispatching(Protocol):
    """A result that carries the messages to send once its transaction has committed."""

    @property
    def dispatches(self) -> Sequence[Message]: ...


Result = TypeVar("Result", bound=Dispatching)


def commit_then_dispatch(
    opened: AbstractContextManager[Session],
    dispatcher: Dispatcher,
    work: Callable[[Session], Result],
    *,
    committed: Callable[[], None] | None = None,
) -> Result:
    """`work` in the transaction `opened`; once that has committed, and only then, the messages
    its result carries go to the dispatcher. A transaction that rolls back sends nothing, and a
    crash between the commit and the send is healed by the sweeper. `committed` runs between
    the two (a checkpoint the fault tests kill a process at)."""
    with opened as session:
        result = work(session)
    if committed is not None:
        committed()
    dispatcher.dispatch(result.dispatches)
    return result
