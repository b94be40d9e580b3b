"""Group commit: single events that arrive together share one transaction.

Each of them alone would pay a transaction's fixed cost: a connection, the route lookup, eight
statements, the commit and a broker round trip, for one row of each kind. `commit_group`
ingests them as a batch does (`ingest_events`, one statement per kind of row), commits, and
publishes their messages in one round trip; the API's front door (api/event_groups.py) feeds it
the events that arrived while the previous group was being written.

Nothing is weaker than one transaction per event: a caller is answered only once its event has
committed, or with its own error. An event the batch refuses (a payload against its schema, an
unknown contact) is answered with that error, and the group is written again without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.db import transaction
from engine.dispatch import Dispatcher, commit_then_dispatch
from engine.errors import AutomationsError
from engine.ingest import Batch, EventRequest, Ingested, RejectedEvent, ingest_events
from engine.runtime import Runtime

# As a batch request: a group is never bigger than what POST /events/batch accepts.
MAX_GROUP = 100


Outcome = Ingested | AutomationsError


def commit_group(
    rt: Runtime,
    dispatcher: Dispatcher,
    requests: Sequence[EventRequest],
    *,
    committed: Callable[[], None] | None = None,
    accepted: Callable[[list[Outcome]], None] | None = None,
) -> list[Outcome]:
    """Each event's outcome, in order: ingested (committed, its messages published) or the
    error that refused it. Raises what stopped the whole group (the database, the broker).
    `accepted` is given the outcomes once the group has committed, before its publish (so that
    callers can be answered then); `committed` runs between the commit and the publish (a
    checkpoint the fault tests kill at).
    """
    outcomes: list[Outcome | None] = [None] * len(requests)
    left = list(range(len(requests)))

    def settled(batch: Batch) -> None:
        for index, result in zip(left, batch.results, strict=True):
            outcomes[index] = result
        if accepted is not None:
            accepted(_known(outcomes))

    while left:
        try:
            _commit(rt, dispatcher, [requests[index] for index in left], committed, settled)
        except RejectedEvent as rejected:
            outcomes[left.pop(rejected.index)] = rejected.error
            continue  # rolled back: the others again, without it
        break
    return _known(outcomes)


def _known(outcomes: list[Outcome | None]) -> list[Outcome]:
    return [outcome for outcome in outcomes if outcome is not None]


def _commit(
    rt: Runtime,
    dispatcher: Dispatcher,
    requests: list[EventRequest],
    committed: Callable[[], None] | None,
    accepted: Callable[[Batch], None],
) -> Batch:
    return commit_then_dispatch(
        transaction(rt.sessions),
        dispatcher,
        lambda session: Batch(ingest_events(session, rt, requests, now=rt.clock.now())),
        committed=committed,
        accepted=accepted,
    )
