"""A pool child lost while running a step, counted by the worker's parent process.

With acks late and `task_reject_on_worker_lost`, Celery requeues the message of a task whose
prefork child died, so a step that kills every process running it would kill the workers' children
one after another, forever. Celery tells the parent in `Request.on_failure`: there the death is
counted (engine/worker_loss.py), and once the step has failed on it the message is acked instead
of requeued. Every other outcome, and a count that cannot be written, goes Celery's own way.

A worker that runs its steps in its own process (`--pool solo`) has no parent to tell: its steps
commit their claims before they run (`ClaimPolicy`), and the sweeper counts the death of a claim
whose lease ran out, as it does for the embedded executor.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.utils.saferepr import saferepr
from celery.worker.request import Request
from celery.worker.state import task_ready

from engine.worker_loss import record_lost_worker
from tasks.poison import parse_id

log = logging.getLogger(__name__)


class ClaimPolicy:
    """Whether this worker's steps commit their claims before they run (`claim_apart` in
    engine/executor.py): decided once, from the worker's pool, as the worker starts."""

    def __init__(self) -> None:
        self.apart = False

    def for_pool(self, sender: Any, **_: Any) -> None:
        """Celery's `worker_init`: prefork children claim with their step, as their parent
        counts their deaths (`StepRequest`); any other pool runs steps in the worker's own
        process, which nothing outlives but a claim committed before the step."""
        self.apart = not issubclass(get_implementation(sender.pool_cls), PreforkPool)


class StepRequest(Request):  # type: ignore[misc]
    """The request of a step task, in the worker's parent process."""

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if not (isinstance(exc, WorkerLostError) and self._step_failed()):
            super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
            return
        task_ready(self)
        self.acknowledge()
        if send_failed_event:
            self.send_event("task-failed", exception=saferepr(exc), traceback=exc_info.traceback)

    def _step_failed(self) -> bool:
        """Count the death against the step; True once the step has failed on such deaths."""
        call = dict(zip(("run_id", "step_key"), self.args or (), strict=False))
        call.update(self.kwargs or {})
        run_id = parse_id(self.name, "run_id", call.get("run_id"))
        step_key = call.get("step_key")
        if run_id is None or not isinstance(step_key, str):
            return False
        try:
            holder = self.task.app.runtime_holder
            return bool(holder.in_parent(lambda rt: record_lost_worker(rt, run_id, step_key)))
        except Exception:
            log.exception("could not count the worker lost running step %s", step_key)
            return False
