"""The baseline: raw Celery tasks that chain themselves, with our worker settings, doing nothing.

Worker: `BENCH_BROKER_URL=redis://... celery -A bench.raw_celery worker -Q bench.raw -c 2`
"""

from __future__ import annotations

import os
from functools import cache

import redis
from celery import Celery

QUEUE = "bench.raw"
DONE_KEY = "bench:raw:done"

app = Celery("bench_raw", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_transport_options={"visibility_timeout": 3600},
    worker_hijack_root_logger=False,
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
