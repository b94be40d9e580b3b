"""The baseline: raw Celery tasks that chain themselves, with our Celery settings, doing nothing.

Worker: `BENCH_BROKER_URL=redis://... celery -A bench.raw_celery worker -Q bench.raw -c 2`

The settings come from `tasks.app.celery_config`, the function our own app is configured with,
so that a setting added there (task events for Flower, say) costs the baseline as much as us.
Only the beat schedule (no beat runs in the benchmark) and the default queue are left out.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import celery
import redis
from celery import Celery

from bench import BENCH_REDIS_URL
from engine.settings import Settings
from tasks.app import celery_config

QUEUE = "bench.raw"
DONE_KEY = "bench:raw:done"
# Ours only: the sweeper's schedule for `celery beat`, and the queue our step tasks go to.
NOT_SHARED = ("beat_schedule", "task_default_queue")


def shared_config(broker_url: str) -> dict[str, Any]:
    """Our Celery configuration for this broker, minus what only our app has."""
    ours = celery_config(Settings(broker_url=broker_url))
    return {key: value for key, value in ours.items() if key not in NOT_SHARED}


app = Celery("bench_raw")
app.conf.update(
    shared_config(os.environ.get("BENCH_BROKER_URL", BENCH_REDIS_URL)),
    task_default_queue=QUEUE,
)


@cache
def counter() -> redis.Redis:
    return redis.Redis.from_url(app.conf.broker_url)


@app.task(name="bench.raw.step")
def step(chain_id: str, left: int) -> None:
    """One link of a chain: enqueue the next one, as a durable run enqueues its next step."""
    if left > 1:
        app.send_task("bench.raw.step", args=[chain_id, left - 1], queue=QUEUE)
    else:
        counter().incr(DONE_KEY)


@app.task(name="bench.raw.noop")
def noop(chain_id: str) -> None:
    """A step of a plain Celery chain (canvas): Celery itself sends the next one."""


@app.task(name="bench.raw.last")
def last(chain_id: str) -> None:
    counter().incr(DONE_KEY)


def plain_chain(chain_id: str, length: int) -> Any:
    """`length` no-op tasks as one Celery canvas chain, the last one counting the chain done."""
    links = [noop.si(chain_id).set(queue=QUEUE) for _ in range(length - 1)]
    return celery.chain(*links, last.si(chain_id).set(queue=QUEUE))
