"""Every status and kind the runtime records, as StrEnums with named groups."""

from enum import StrEnum


class AutomationStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


RUN_TERMINAL = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED}
)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


# A step in one of these may be claimed by a worker (once its due time has come).
STEP_CLAIMABLE = frozenset({StepStatus.PENDING, StepStatus.WAITING})
STEP_ACTIVE = frozenset({StepStatus.PENDING, StepStatus.RUNNING, StepStatus.WAITING})
STEP_TERMINAL = frozenset(
    {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)


class BulkAction(StrEnum):
    """What a bulk operation does to each run it matched."""

    RETRY = "retry"
    REPLAY = "replay"


class BulkStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    # Cancelled by an operator: the runs it had not reached were left as they were.
    CANCELLED = "cancelled"


class BulkItemStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    # The run was no longer retryable when its turn came (retried meanwhile, or its contact
    # deleted): nothing was done to it, and the reason is recorded.
    SKIPPED = "skipped"
    FAILED = "failed"


class SkipReason(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    BRANCH_NOT_TAKEN = "branch_not_taken"
    CONTACT_DELETED = "contact_deleted"


class StepType(StrEnum):
    """The built-in step types' names. The registry (engine/step_types.py) says which names are
    valid: a step type added there needs no member here."""

    TRIGGER = "trigger"
    SEND_EMAIL = "send_email"
    DELAY = "delay"
    CONDITION = "condition"
    WAIT_FOR_EVENT = "wait_for_event"
    CONTACT_UPDATE = "contact_update"
    CONTACT_DELETE = "contact_delete"
    ADD_TO_SEGMENT = "add_to_segment"


class ConnectionType(StrEnum):
    DEFAULT = "default"
    CONDITION_MET = "condition_met"
    CONDITION_NOT_MET = "condition_not_met"
    EVENT_RECEIVED = "event_received"
    TIMEOUT = "timeout"


class TemplateStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"


class DomainStatus(StrEnum):
    NOT_STARTED = "not_started"
    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"
    TEMPORARY_FAILURE = "temporary_failure"


class OutboxStatus(StrEnum):
    SENDING = "sending"  # written before the transport is called; outcome unknown until marked
    SENT = "sent"
    FAILED = "failed"
    # Final: a try may have sent it (its outcome was never recorded) and none will follow, as
    # its step was skipped (the contact unsubscribed or was deleted). Neither sent nor not.
    UNKNOWN = "unknown"


class SweeperStatus(StrEnum):
    """GET /health/sweeper: the age of the sweeper's last completed tick against its limit."""

    OK = "ok"
    # No tick yet, and the heartbeat was set up less than the limit ago: a fresh deployment.
    WAITING = "waiting"
    LATE = "late"
