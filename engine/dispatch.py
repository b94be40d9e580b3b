"""Messages the engine asks its adapter to send once the transaction has committed."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


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


class AfterCommit:
    """A dispatcher for callers who are answered by the commit: a send that fails is logged,
    not raised.

    What such a caller asked for is committed by the time its messages go out, and the sweeper
    sends the steps of a committed transaction that were never published (after
    `stale_after_seconds`; bulk work after its own). Raising would tell an HTTP caller that
    a request which took effect had failed, and a caller who then sends it again, without an
    idempotency key, starts its runs twice.
    """

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        try:
            self.inner.dispatch(dispatches)
        except Exception:
            log.error(
                "%d message(s) of a committed transaction not sent; the sweeper sends them",
                len(dispatches),
                exc_info=True,
            )

    def ping(self) -> None:
        self.inner.ping()


def after_commit(dispatcher: Dispatcher) -> AfterCommit:
    """`dispatcher` for callers answered by the commit; one that already is stays as it is."""
    return dispatcher if isinstance(dispatcher, AfterCommit) else AfterCommit(dispatcher)


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
    accepted: Callable[[Result], None] | None = None,
) -> Result:
    """`work` in the transaction `opened`; once that has committed, and only then, the messages
    its result carries go to the dispatcher. A transaction that rolls back sends nothing, and a
    crash between the commit and the send is healed by the sweeper. `accepted` is given the
    result as soon as it has committed (a caller may be answered before the send), then
    `committed` runs (a checkpoint the fault tests kill a process at)."""
    with opened as session:
        result = work(session)
    if accepted is not None:
        accepted(result)
    if committed is not None:
        committed()
    dispatcher.dispatch(result.dispatches)
    return result
