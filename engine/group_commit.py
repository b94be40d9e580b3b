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


def commit_group(
    rt: Runtime,
    dispatcher: Dispatcher,
    requests: Sequence[EventRequest],
    *,
    committed: Callable[[], None] | None = None,
) -> list[Ingested | AutomationsError]:
    """Each event's outcome, in order: ingested (committed, its messages published) or the
    error that refused it. Raises what stopped the whole group (the database, the broker);
    `committed` runs between the commit and the publish (a checkpoint the fault tests kill at).
    """
    outcomes: list[Ingested | AutomationsError | None] = [None] * len(requests)
    left = list(range(len(requests)))
    while left:
        try:
            batch = _commit(rt, dispatcher, [requests[index] for index in left], committed)
        except RejectedEvent as rejected:
            outcomes[left.pop(rejected.index)] = rejected.error
            continue  # rolled back: the others again, without it
        for index, result in zip(left, batch.results, strict=True):
            outcomes[index] = result
        break
    return [outcome for outcome in outcomes if outcome is not None]


def _commit(
    rt: Runtime,
    dispatcher: Dispatcher,
    requests: list[EventRequest],
    committed: Callable[[], None] | None,
) -> Batch:
    return commit_then_dispatch(
        transaction(rt.sessions),
        dispatcher,
        lambda session: Batch(ingest_events(session, rt, requests, now=rt.clock.now())),
        committed=committed,
    )
