"""Enqueue automation triggers straight onto the broker, without HTTP and without our code.

Any service that shares the broker can do this with plain Celery. One event per message:

    python examples/produce_events.py redis://127.0.0.1:6379/0 user.created ann@example.com \
        '{"plan": "pro"}' signup-4711

Or up to 100 events in one message (`--batch`), each for one of the addresses given:

    python examples/produce_events.py --batch redis://127.0.0.1:6379/0 user.created \
        ann@example.com bob@example.com '{"plan": "pro"}'

The worker runs the same one-transaction ingestion as `POST /events/send` (one event) and
`POST /events/batch` (a batch: all or nothing). Give an idempotency key per event (here the
signup id) and retries of the same trigger are ingested once; without one, a redelivered
message is still ingested once (its task id stands in for the key).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from celery import Celery

SEND = "automations.events.send"
SEND_BATCH = "automations.events.send_batch"
QUEUE = "automations"


def producer(broker_url: str) -> Celery:
    """A Celery app that only sends: JSON messages, by task name, to our queue."""
    app = Celery(broker=broker_url, set_as_current=False)
    app.conf.task_serializer = "json"
    return app


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
    kwargs = {
        "event": event,
        "email": email,
        "contact_id": contact_id,
        "payload": payload or {},
        "idempotency_key": idempotency_key,
    }
    with producer(broker_url) as app:
        return str(app.send_task(SEND, kwargs=kwargs, queue=QUEUE).id)


def send_events(broker_url: str, events: list[dict[str, Any]]) -> str:
    """Enqueue up to 100 events in one message; the Celery task id. Each event is a dict of
    `event`, `email` or `contact_id`, and optional `payload` and `idempotency_key`."""
    with producer(broker_url) as app:
        return str(app.send_task(SEND_BATCH, kwargs={"events": events}, queue=QUEUE).id)


def main(argv: list[str]) -> int:
    batch = "--batch" in argv
    args = [arg for arg in argv[1:] if arg != "--batch"]
    if len(args) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    broker_url, event = args[:2]
    if batch:
        emails = [arg for arg in args[2:] if not arg.startswith("{")]
        payloads = [json.loads(arg) for arg in args[2:] if arg.startswith("{")]
        payload = payloads[0] if payloads else {}
        events = [{"event": event, "email": email, "payload": payload} for email in emails]
        print(send_events(broker_url, events))
        return 0
    payload = json.loads(args[3]) if len(args) > 3 else {}
    key = args[4] if len(args) > 4 else None
    print(send_event(broker_url, event, email=args[2], payload=payload, idempotency_key=key))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
