"""The Celery app the fault workers run: the real one, plus optional chaos on publish.

`celery -A bench.faultlab.worker_app worker`. While the file named by FAULTS_CHAOS_FILE exists,
every step message this worker publishes is published twice (the copy up to a second later, so
copies overtake other messages), and after a step task finishes its message is sometimes
published again, a stale doorbell for a step that is done. Each extra message appends one byte
to FAULTS_CHAOS_COUNT, so the driver can report how many it injected.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from celery.signals import task_postrun

from engine.dispatch import Dispatch
from engine.settings import Settings
from tasks.app import create_celery_app
from tasks.dispatcher import STEP_QUEUE, CeleryDispatcher

app = create_celery_app(Settings())
_publish = app.send_task
_rng = random.Random()
STALE_SHARE = 0.3


def _chaos_on() -> bool:
    flag = os.environ.get("FAULTS_CHAOS_FILE")
    return bool(flag) and os.path.exists(flag)  # type: ignore[arg-type]


def _count() -> None:
    path = os.environ.get("FAULTS_CHAOS_COUNT")
    if path:
        with open(path, "ab") as counter:  # O_APPEND: one byte per message, from any process
            counter.write(b".")


def send_task(name: str, *args: Any, **kwargs: Any) -> Any:
    result = _publish(name, *args, **kwargs)
    if name.startswith("automations.steps.") and _chaos_on():
        copy = dict(kwargs, countdown=(kwargs.get("countdown") or 0) + _rng.uniform(0, 1))
        _publish(name, *args, **copy)
        _count()
    return result


app.send_task = send_task

# Step messages on our Redis transport skip `send_task`: they are pushed on the queue's list
# (tasks/dispatcher.py). Their copies, the same way: a second push of each, reversed, each
# copy due up to a second later.
_push = CeleryDispatcher._push


def _push_twice(dispatcher: CeleryDispatcher, dispatches: Sequence[Dispatch]) -> None:
    _push(dispatcher, dispatches)
    if _chaos_on() and dispatches:
        late = [replace(d, countdown=d.countdown + _rng.uniform(0, 1)) for d in dispatches]
        _push(dispatcher, late[::-1])
        for _ in late:
            _count()


CeleryDispatcher._push = _push_twice  # type: ignore[method-assign,assignment]


@task_postrun.connect
def _stale_copy(sender: Any = None, kwargs: Any = None, **_: Any) -> None:
    name = getattr(sender, "name", "")
    if name.startswith("automations.steps.") and _chaos_on() and _rng.random() < STALE_SHARE:
        _publish(name, kwargs=dict(kwargs or {}), queue=STEP_QUEUE)
        _count()
