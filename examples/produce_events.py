"""Enqueue automation triggers straight onto the broker, without HTTP and without our code.

Any service that shares the broker can do this with plain Celery:

    python examples/produce_events.py redis://127.0.0.1:6379/0 user.created ann@example.com \
        '{"plan": "pro"}' signup-4711

The worker runs the same one-transaction ingestion as `POST /events/send`. Give an idempotency
key (here the signup id) and retries of the same trigger are ingested once.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from celery import Celery

TASK = "automations.events.send"
QUEUE = "automations"


def send_event(
    broker_url: str,
    event: str,
    *,
    email: str | None = None,
    contact_id: str | None = None,
    payload: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> str:
    """Enqueue one event by task name; the Celery task id."""
    app = Celery(broker=broker_url, set_as_current=False)
    app.conf.task_serializer = "json"
    kwargs = {
        "event": event,
        "email": email,
        "contact_id": contact_id,
        "payload": payload or {},
        "idempotency_key": idempotency_key,
    }
    result = app.send_task(TASK, kwargs=kwargs, queue=QUEUE)
    return str(result.id)


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    broker_url, event, email = argv[1:4]
    payload = json.loads(argv[4]) if len(argv) > 4 else {}
    key = argv[5] if len(argv) > 5 else None
    print(send_event(broker_url, event, email=email, payload=payload, idempotency_key=key))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
