"""What one ingestion transaction costs, in one process, without HTTP or Celery.

    python -m bench.profile_ingest [--group 1] [--rounds 300] [--keyed] [--database-url URL]

Sets up bench.ingest's schema (one enabled automation listening for `bench.event`), then
commits `--rounds` groups of `--group` events for new contacts through
engine/group_commit.py's `commit_group`, as POST /events/send does for the events that arrive
together (a group of 100 is what POST /events/batch and automations.events.send_batch write).
Prints the SQL statements of one transaction (BEGIN, COMMIT and the pool's ping are not
statements SQLAlchemy reports, and come on top), then wall-clock and CPU milliseconds per
group and CPU per event. Run it under py-spy to see where the CPU goes. The database's schema
is dropped and created anew.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event

from bench.ingest import prepare
from bench.procs import analyze_tables, ensure_database
from engine.dispatch import Message
from engine.group_commit import commit_group
from engine.ingest import EventRequest
from engine.runtime import create_runtime
from engine.settings import Settings

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1/bench_ingest"


class _Discard:
    """A dispatcher that publishes nothing: the broker's round trip is not measured here."""

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        return None

    def ping(self) -> None:
        return None


def _requests(size: int, keyed: bool) -> list[EventRequest]:
    return [
        EventRequest(
            "bench.event",
            email=f"p-{uuid.uuid4().hex[:12]}@example.com",
            payload={"plan": "pro", "n": n},
            idempotency_key=uuid.uuid4().hex if keyed else None,
        )
        for n in range(size)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--group", type=int, default=1, help="events per transaction")
    parser.add_argument("--rounds", type=int, default=300, help="transactions timed")
    parser.add_argument("--keyed", action="store_true", help="events carry idempotency keys")
    args = parser.parse_args(argv)

    ensure_database(args.database_url)
    prepare(args.database_url)
    rt = create_runtime(Settings(database_url=args.database_url))
    statements: list[str] = []

    # The dialect's event, not the connection's: a listener of those would send every
    # statement through Core (engine/store/core.py's `listened`).
    @event.listens_for(rt.sessions.kw["bind"], "do_execute")
    def _record(_cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    dispatcher = _Discard()
    # Caches warm, and tables of some thousand rows analyzed (bench.procs.analyze_tables): a
    # new table's guessed size made the contacts' lookup of a group of 100 a scan of them all.
    for _ in range(max(1, 2000 // args.group)):
        commit_group(rt, dispatcher, _requests(args.group, args.keyed))
    analyze_tables(args.database_url)
    statements.clear()
    commit_group(rt, dispatcher, _requests(args.group, args.keyed))
    print(f"SQL statements in a transaction of {args.group} event(s): {len(statements)}")
    for statement in statements:
        print(f"  [{len(statement):>6} chars] {' '.join(statement.split())[:100]}")
    groups = [_requests(args.group, args.keyed) for _ in range(args.rounds)]
    wall, cpu = time.perf_counter(), time.process_time()
    for group in groups:
        commit_group(rt, dispatcher, group)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{wall / args.rounds * 1000:.2f} ms wall and {cpu / args.rounds * 1000:.2f} ms CPU"
        f" per transaction, {cpu / args.rounds / args.group * 1000:.3f} ms CPU per event"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
