"""Sends the engine's dispatches as Celery messages, by stable task name."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from engine.dispatch import BulkWork, Message
from models.enums import StepType

STEP_QUEUE = "automations"
SWEEPER_QUEUE = "automations.sweeper"
BULK_TASK = "automations.runs.bulk"


def step_task_name(step_type: StepType) -> str:
    return f"automations.steps.{step_type.value}"


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def dispatch(self, dispatches: Sequence[Message]) -> None:
        if not dispatches:
            return
        # One producer (and broker connection) for the lot, not one from the pool per message,
        # and its messages written in one pipelined round trip (kombu's publish batch) rather
        # than one per message. The caller has committed: a failed write raises, as one
        # message would, and the sweeper sends what was committed but not published.
        with self.app.producer_or_acquire() as producer, producer.batch():
            for item in dispatches:
                if isinstance(item, BulkWork):
                    self.app.send_task(
                        BULK_TASK,
                        kwargs={"bulk_id": str(item.bulk_id)},
                        queue=STEP_QUEUE,
                        producer=producer,
                    )
                    continue
                self.app.send_task(
                    step_task_name(item.step_type),
                    kwargs={"run_id": str(item.run_id), "step_key": item.step_key},
                    countdown=item.countdown or None,
                    queue=STEP_QUEUE,
                    producer=producer,
                )

    def ping(self) -> None:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
