"""The broker side of bench/ingest.py: events enqueued as `automations.events.send` (one per
message) or `automations.events.send_batch` (many per message), then drained by one worker.

The messages are all enqueued while the worker's consumer is paused, then the clock starts when
it resumes and stops when the last event is committed: the figure is the worker's, not the
producer's. They go to a queue of their own, so that the worker does nothing but ingest (the
step messages ingestion publishes wait in the step queue, which the bench purges)."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from celery import Celery
from sqlalchemy import Engine, create_engine, text

from bench.procs import ROOT, add_side_arguments, sides
from bench.workers import start_workers, wait_ready

QUEUE = "bench.events"
SEND = "automations.events.send"
SEND_BATCH = "automations.events.send_batch"


@dataclass(frozen=True)
class Drained:
    events: int
    messages: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds


def purge(redis_url: str, *queues: str) -> None:
    """Empty these queues of the bench's Redis database (only their keys, nothing else)."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(*queues)
    finally:
        client.close()


@contextmanager
def one_worker(
    env: dict[str, str], log: Path, broker_url: str, root: Path = ROOT, pool: str = "prefork"
) -> Iterator[tuple[Celery, list[int]]]:
    """One worker on the bench's queue, as `automations worker` runs it by default (prefork, a
    pool process per core), or a single process (solo), running the code of the checkout at
    `root`; yields a client app to steer it, and the worker's pid."""
    client = Celery(broker=broker_url, set_as_current=False)
    client.conf.task_serializer = "json"
    processes = 1 if pool == "solo" else os.cpu_count() or 1
    workers = start_workers(
        "wiring.worker", QUEUE, concurrency=processes, pool=pool, env=env, log=log, root=root
    )
    try:
        wait_ready(client)
        yield client, workers.pids
    finally:
        workers.stop()
        client.close()


def drain(
    client: Celery, database_url: str, *, events: int, per_message: int, timeout: float = 300
) -> Drained:
    """Enqueue `events` events, `per_message` to a message, with the consumer paused; the time
    one worker takes to commit them all once it consumes again."""
    run = uuid.uuid4().hex[:8]
    client.control.cancel_consumer(QUEUE, reply=True, timeout=5, limit=1)
    messages = _enqueue(client, run, events, per_message)
    db_engine = create_engine(database_url)
    try:
        before = _stored(db_engine)
        began = time.perf_counter()
        client.control.add_consumer(QUEUE, reply=True, timeout=5, limit=1)
        # Polled by an index lookup of the last event's contact, then counted: a count of a
        # table of many thousand events every 20 ms cost PostgreSQL CPU the bench charges to
        # the worker.
        last = _address(run, events - 1)
        while not _has_contact(db_engine, last) or _stored(db_engine) - before < events:
            if time.perf_counter() - began > timeout:
                raise TimeoutError(f"{events} events not ingested after {timeout} s")
            time.sleep(0.02)
        return Drained(events, messages, time.perf_counter() - began)
    finally:
        db_engine.dispose()


def _address(run: str, n: int) -> str:
    return f"{run}-{n}@bench.test"


def _enqueue(client: Celery, run: str, events: int, per_message: int) -> int:
    def event(n: int) -> dict[str, object]:
        return {"event": "bench.event", "email": _address(run, n), "payload": {"n": n}}

    sent = 0
    with client.producer_or_acquire() as producer:
        for start in range(0, events, per_message):
            numbers = range(start, min(start + per_message, events))
            if per_message == 1:
                name, kwargs = SEND, event(start)
            else:
                name, kwargs = SEND_BATCH, {"events": [event(n) for n in numbers]}
            client.send_task(name, kwargs=kwargs, queue=QUEUE, producer=producer)
            sent += 1
    return sent


def _has_contact(db_engine: Engine, email: str) -> bool:
    with db_engine.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM contacts WHERE email = :email"), {"email": email})
        return found.first() is not None


def _stored(db_engine: Engine) -> int:
    with db_engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())


def main(argv: list[str] | None = None) -> int:
    """Only the broker side of bench.ingest: ours, and first a baseline checkout if given."""
    from bench import ingest  # it imports this module

    parser = argparse.ArgumentParser(prog="python -m bench.ingest_broker", description=__doc__)
    ingest.add_arguments(parser)
    parser.add_argument(
        "--pool",
        choices=("prefork", "solo"),
        default="prefork",
        help="worker pool (prefork: a process per core; solo: one)",
    )
    add_side_arguments(parser, pairs=False)
    args = parser.parse_args(argv)
    for side, root in sides(args):
        costs: dict[str, dict[str, float]] = {}
        drained = ingest.measure_broker(args, costs, root=root, pool=args.pool)
        for name, one in drained.items():
            cpu_ms = ", ".join(f"{part} {ms:.3f}" for part, ms in costs[name].items())
            print(
                f"{side:>14}  {name:<16} {one.per_second:>9,.0f} events/s  "
                f"({one.messages} messages, {one.seconds:.2f} s; CPU ms/event: {cpu_ms})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
