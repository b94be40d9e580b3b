"""What pushing a step message costs, on the dispatcher's held channel and through the pool.

    python -m bench.dispatch_cost [--rounds 5000] [--repeat 3] [--redis-url URL]

`CeleryDispatcher` pushes the step messages of a task execution in one LPUSH (tasks/dispatcher.py).
This times one message pushed each way on one Redis database, the entries encoded once:

- held: on the channel the dispatcher keeps for its process (what every push does);
- pooled: through a producer taken from the app's pool for the push (what every push did
  before, and what a push does once more after the held channel lost its connection);

and the whole `dispatch` of one step (encoding included). Prints µs of CPU per push. The
messages go to a queue of their own, deleted at the end.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable

import redis

from bench import BENCH_REDIS_URL
from engine.dispatch import Dispatch
from engine.settings import Settings
from tasks import dispatcher as dispatching
from tasks import step_messages
from tasks.app import create_celery_app

DEFAULT_URL = BENCH_REDIS_URL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=DEFAULT_URL)
    parser.add_argument("--rounds", type=int, default=5000, help="pushes per turn")
    parser.add_argument("--repeat", type=int, default=3, help="turns of each way")
    args = parser.parse_args(argv)
    queue = f"bench.dispatch.{uuid.uuid4().hex}"
    dispatching.STEP_QUEUE = queue  # this bench's queue, not the workers'
    app = create_celery_app(Settings(broker_url=args.redis_url))
    sender = dispatching.CeleryDispatcher(app)
    step = Dispatch(uuid.uuid4(), "mail", "send_email")
    entry = step_messages.encode(
        "automations.steps.send_email",
        {"run_id": str(step.run_id), "step_key": step.step_key},
        queue=queue,
        origin="bench",
    )

    def held() -> None:
        with sender._channel().conn_or_acquire() as client:
            client.lpush(queue, entry)

    ways: dict[str, Callable[[], None]] = {
        "held": held,
        "pooled": lambda: sender._push_pooled([entry]),
        "dispatch": lambda: sender.dispatch([step]),
    }
    client = redis.Redis.from_url(args.redis_url)
    try:
        for _ in range(args.repeat):
            for name, way in ways.items():
                for _ in range(200):  # connections open, caches warm
                    way()
                started = time.process_time()
                for _ in range(args.rounds):
                    way()
                spent = (time.process_time() - started) * 1e6 / args.rounds
                print(f"{name:9} {spent:6.1f} µs of CPU per push")
                client.delete(queue)
    finally:
        client.delete(queue)
        client.close()
        app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
