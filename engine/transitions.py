"""The one table of allowed status moves for steps and runs, and how a run's status is decided."""

from collections.abc import Iterable

from models.enums import RunStatus, SkipReason, StepStatus, StepType

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset({StepStatus.RUNNING, StepStatus.SKIPPED, StepStatus.CANCELLED}),
    StepStatus.RUNNING: frozenset(
        {
            StepStatus.COMPLETED,
            StepStatus.FAILED,
            StepStatus.SKIPPED,
            StepStatus.WAITING,
            StepStatus.PENDING,  # a transient failure waits for its retry
            StepStatus.RUNNING,  # re-claimed after the previous worker's lease expired
            StepStatus.CANCELLED,
        }
    ),
    StepStatus.WAITING: frozenset(
        {
            StepStatus.RUNNING,  # its due time came (delay over, or wait timed out)
            StepStatus.COMPLETED,  # the awaited event arrived
            StepStatus.CANCELLED,
        }
    ),
    StepStatus.COMPLETED: frozenset(),
    StepStatus.FAILED: frozenset(),
    StepStatus.SKIPPED: frozenset(),
    StepStatus.CANCELLED: frozenset(),
}

# A step row is created pending, or already skipped when its branch was not taken.
STEP_INITIAL = frozenset({StepStatus.PENDING, StepStatus.SKIPPED})

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.RUNNING: frozenset(
        {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED}
    ),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.SKIPPED: frozenset(),
}


def can_move_step(a: StepStatus, b: StepStatus) -> bool:
    """Whether a step may move from status a to status b."""
    return b in STEP_TRANSITIONS[a]


def can_move_run(a: RunStatus, b: RunStatus) -> bool:
    """Whether a run may move from status a to status b."""
    return b in RUN_TRANSITIONS[a]


def final_run_status(
    steps: Iterable[tuple[str, StepStatus, SkipReason | None]],
) -> RunStatus:
    """The status a finished run ends in: cancelled > failed > skipped > completed."""
    statuses: set[StepStatus] = set()
    unsubscribed = False
    for step_type, status, reason in steps:
        statuses.add(status)
        if (
            step_type == StepType.SEND_EMAIL
            and status == StepStatus.SKIPPED
            and reason == SkipReason.UNSUBSCRIBED
        ):
            unsubscribed = True
    if StepStatus.CANCELLED in statuses:
        return RunStatus.CANCELLED
    if StepStatus.FAILED in statuses:
        return RunStatus.FAILED
    return RunStatus.SKIPPED if unsubscribed else RunStatus.COMPLETED
