"""An event enqueued on the broker must survive a SIGKILL of the worker's main process.

`automations.events.send` carries the event itself: until its ingestion commits, the message is
its only copy. The worker's main process takes messages from Redis and records them as
unacknowledged; a kill at any instant of that must leave each message in Redis somewhere (the
queue, the consumer's in-flight list, or unacked), from where it comes back. Here one prefork
worker ingests a few thousand of them, sent in bursts so that it is sometimes busy and sometimes
waiting for the next, while its main process is SIGKILLed again and again at random moments;
afterwards every event must be stored once.

The visibility timeout stays at its default hour: what a killed worker held unacknowledged comes
back because the restarted one finds it dead (silent for three heartbeats, its connections to
Redis closed by the kernel; the lab's heartbeat is 1 s), within seconds, and the outcome is
read once the broker holds nothing.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from bench.faultlab.lab import Lab
from engine.db import transaction
from models.tables import Event
from tests.conftest import POSTGRES_URL
from tests.faults.conftest import DATABASE, lab_prerequisites
from tests.patience import patience

EVENTS = 6000
KILLS = 10
BURST = 30  # events sent at once, at most; then a pause of up to 50 ms (about 500 a second)
CONTACTS = 50
QUIET = 3.0  # the broker empty and nothing stored for this long: the outcome is final


# Both shapes group consecutive events into one transaction (tasks/event_groups.py): a solo
# worker writes its groups in the consuming process itself.
@pytest.fixture(scope="module", params=["prefork", "solo"])
def fetch_lab(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Lab]:
    lab_prerequisites()
    built = Lab(
        tmp_path_factory.mktemp("fetch"),
        POSTGRES_URL,
        f"{DATABASE}_fetch",
        workers=(request.param,),
    )
    yield built
    built.close()


def stored(lab: Lab, *, rows: bool = False) -> int:
    """The events of this test stored: their keys, or their rows."""
    counted = func.count() if rows else func.count(func.distinct(Event.idempotency_key))
    with transaction(lab.runtime.sessions) as session:
        query = select(counted).where(Event.idempotency_key.like("fetch-%"))
        return int(session.scalar(query) or 0)


def held_by_broker(lab: Lab) -> int:
    """Messages anywhere in our Redis: queues, in-flight lists, unacknowledged."""
    client = lab.redis.client()
    held = 0
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == b"list":
            held += int(client.llen(key))
        elif key == b"unacked":
            held += int(client.hlen(key))
    return held


def send_in_bursts(lab: Lab, rng: random.Random) -> None:
    sent = 0
    while sent < EVENTS:
        burst = min(rng.randint(1, BURST), EVENTS - sent)
        keys = range(sent, sent + burst)
        lab.enqueue(
            "fetch.test", [(f"fetch-{i % CONTACTS}@example.test", f"fetch-{i}") for i in keys]
        )
        sent += burst
        time.sleep(rng.uniform(0.01, 0.05))


@pytest.mark.timeout(600)
def test_events_survive_kills_of_the_consuming_process(fetch_lab: Lab) -> None:
    lab = fetch_lab
    lab.reset(transport=lab.transport, chaos=False)
    rng = random.Random()
    producer = threading.Thread(target=send_in_bursts, args=(lab, random.Random(rng.random())))
    producer.start()
    kills = 0
    while kills < KILLS or producer.is_alive():
        lab.pool.wait_ready(0)
        time.sleep(rng.uniform(0.05, 1.0))  # ingesting meanwhile, or waiting for the next
        lab.pool.kill_main(0)
        kills += 1
    producer.join()
    lab.pool.wait_ready(0)

    # Until the broker holds nothing and nothing more is stored: all that will ever be is.
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + patience(240)
    while time.monotonic() < deadline:
        now_stored = stored(lab)
        if now_stored == EVENTS:
            break
        if now_stored != last or held_by_broker(lab):
            last, since = now_stored, time.monotonic()
        elif time.monotonic() - since > QUIET:
            break
        time.sleep(0.25)
    lost = EVENTS - stored(lab)
    inflight, unacked = lab.given_back()
    print(
        f"\n{kills} kills of the consuming process while {EVENTS} events sent: {lost} lost;"
        f" given back from killed consumers: {inflight} from in-flight lists, {unacked}"
        " unacknowledged"
    )
    assert lost == 0, f"{lost} of {EVENTS} events lost over {kills} kills of the main process"
    assert stored(lab, rows=True) == EVENTS, "an event ingested twice"
