"""Messages our tasks cannot run, refused in the consumer with one line and acked.

Celery's default strategy trusts a message's shape: a body that is not `[args, kwargs, embed]`,
a message without an `id` header or with a bad `timelimit` raise in the consumer, and the
worker stops ("Unrecoverable error"). The message is unacknowledged by then, so the broker
delivers it again to the next worker, which stops too: one foreign message would stop every
worker in turn. Each of our tasks is started by `checked_strategy` instead, which looks at the
message before handing it on (to Celery's strategy, or the task's own: `inner_strategy`), and
acks what no execution could run: arguments the task does not take included, since retrying
a call that cannot bind cannot help.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import uuid
from typing import Any

from celery import Celery, Task
from celery.utils.imports import instantiate
from kombu.exceptions import ContentDisallowed, DecodeError

from tasks.redaction import shown_kwargs

log = logging.getLogger(__name__)


class CheckedTask(Task):  # type: ignore[misc]
    """The base of our tasks: a message is checked before the task's strategy sees it."""

    Strategy = "tasks.poison:checked_strategy"
    inner_strategy = "celery.worker.strategy:default"
    # The arguments name a person (a producer's event): Flower and the log see them masked.
    personal_kwargs = False


def checked_strategy(task: CheckedTask, app: Celery, consumer: Any, **options: Any) -> Any:
    """Celery's strategy hook: refuse malformed messages, hand the others on."""
    inner = instantiate(task.inner_strategy, task, app, consumer, **options)
    signature = inspect.signature(task.run)

    def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any) -> Any:
        problem = None if body is not None else malformed(message, signature)
        if problem is None:  # protocol 1 (`body` decoded) is checked by Celery itself
            if task.personal_kwargs and body is None:
                message.headers["kwargsrepr"] = shown_kwargs(_kwargs(message.payload))
            return inner(message, body, ack, reject, callbacks)
        task_id = (message.headers or {}).get("id")
        log.error("message refused (task %s %r): %s; acked, not run", task.name, task_id, problem)
        message.reject_log_error(log, consumer.connection_errors)
        return None

    return on_message


def _kwargs(payload: Any) -> Any:
    """The keyword arguments of a body `malformed` found fit (a "hybrid" one too)."""
    return payload.get("kwargs", {}) if isinstance(payload, dict) else payload[1]


def malformed(message: Any, signature: inspect.Signature) -> str | None:
    """What makes this protocol 2 message unfit for a task with this signature; None if fit."""
    headers = message.headers
    if not isinstance(headers.get("id"), str):
        return "no task id"
    limits = headers.get("timelimit")
    if limits and not (
        isinstance(limits, list | tuple)
        and len(limits) == 2
        and all(limit is None or isinstance(limit, int | float) for limit in limits)
    ):
        return f"bad timelimit {limits!r:.100}"
    try:
        payload = message.payload
    except (DecodeError, ContentDisallowed) as refused:
        return f"undecodable body ({message.content_type}): {refused!s:.200}"
    if isinstance(payload, dict):  # a "hybrid" body: protocol 1's args and kwargs in it
        payload = [payload.get("args", ()), payload.get("kwargs", {}), None]
    if not (isinstance(payload, list | tuple) and len(payload) == 3):
        return "the body is not [args, kwargs, embed]"
    args, kwargs, embed = payload
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        return "the body is not [args, kwargs, embed]"
    if embed is not None and not isinstance(embed, dict):
        return "the body is not [args, kwargs, embed]"
    try:
        signature.bind(*args, **kwargs)
    except TypeError as unfit:
        return f"arguments the task does not take: {unfit}"
    return None


def hinted_id(value: object) -> uuid.UUID | None:
    """An id a message carries as a hint (a header such as the run's version): None when it
    is absent or not an id, which costs the task the hint and nothing else."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return uuid.UUID(value)
    return None


def parse_id(task_name: str, name: str, value: object) -> uuid.UUID | None:
    """The id a task was given; None, and one line in the log, for a value that is not one."""
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    log.error("message refused (task %s): `%s` is not an id: %.100r", task_name, name, value)
    return None
