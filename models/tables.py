"""SQLAlchemy tables: the durable state of contacts, automations, runs, steps and the outbox."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from models.enums import (
    AutomationStatus,
    BulkItemStatus,
    BulkStatus,
    DomainStatus,
    OutboxStatus,
    RunStatus,
    StepStatus,
    TemplateStatus,
)
from models.ids import new_id
from models.types import JSONType, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSONType}


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True, default=new_id)


def _status(default: str) -> Mapped[str]:
    return mapped_column(String(20), nullable=False, default=default)


# Partial indexes: the sweeper reads only steps that can still become due, so its cost follows
# what is due, not how many finished steps the table holds.
_CLAIMABLE = text("status IN ('pending', 'waiting')")
_RUNNING = text("status = 'running'")
_WAITING = text("status = 'waiting'")
_CANCELLING = text("runs_cancelling_at IS NOT NULL")
_UNDISPATCHED = text("status IN ('pending', 'waiting') AND dispatched_at IS NULL")


class Contact(Base):
    __tablename__ = "contacts"
    # The contacts list's order (engine/store/paging.py): a page reads its rows, not the table.
    __table_args__ = (Index("ix_contacts_created", "created_at", "id"),)

    id: Mapped[uuid.UUID] = _id()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    unsubscribed: Mapped[bool] = mapped_column(Boolean, default=False)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime]


class SegmentMembership(Base):
    __tablename__ = "segment_memberships"

    segment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[dt.datetime]


class Domain(Base):
    __tablename__ = "domains"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(253), unique=True)
    status: Mapped[str] = _status(DomainStatus.NOT_STARTED)
    region: Mapped[str] = mapped_column(String(32), default="us-east-1")
    created_at: Mapped[dt.datetime]
    # Settings Resend's API accepts and returns; stored so they read back as written.
    open_tracking: Mapped[bool] = mapped_column(Boolean, default=False)
    click_tracking: Mapped[bool] = mapped_column(Boolean, default=False)
    tls: Mapped[str] = mapped_column(String(20), default="opportunistic")
    custom_return_path: Mapped[str] = mapped_column(String(63), default="send")
    tracking_subdomain: Mapped[str | None] = mapped_column(String(63))


class TemplateContent:
    """A template's content: its draft (templates) and each published copy (template_versions)."""

    subject: Mapped[str | None] = mapped_column(Text)
    sender: Mapped[str | None] = mapped_column(String(320))
    reply_to: Mapped[list[str] | None] = mapped_column(JSONType)
    html: Mapped[str | None] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text)
    # [{"key": "FIRST_NAME", "type": "string", "fallback_value": "there"}]
    variables: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)


class Template(TemplateContent, Base):
    __tablename__ = "templates"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(255))
    alias: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = _status(TemplateStatus.DRAFT)
    published_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    # The columns above are the draft, which an update changes. A publish copies it into a new
    # version, and sends render that version until the next publish (None: never published).
    current_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("template_versions.id", use_alter=True)
    )
    # The draft holds changes that no version has: true from creation to the first publish,
    # and from an update of the content to the next publish.
    has_unpublished_versions: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=false()
    )


class TemplateVersion(TemplateContent, Base):
    """An immutable copy of a template's content, made by a publish; sends render one."""

    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("template_id", "number"),)

    id: Mapped[uuid.UUID] = _id()
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    # When it was published.
    created_at: Mapped[dt.datetime]


class EventDefinition(Base):
    __tablename__ = "event_definitions"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # {"field": "string" | "number" | "boolean" | "date"}
    schema: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_contact_name_received", "contact_id", "name", "received_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(255))
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(256), unique=True)
    received_at: Mapped[dt.datetime]


class Automation(Base):
    __tablename__ = "automations"
    __table_args__ = (
        Index("ix_automations_trigger", "trigger_event", "status"),
        Index("ix_automations_created", "created_at", "id"),
        Index(
            "ix_automations_cancelling",
            "runs_cancelling_at",
            postgresql_where=_CANCELLING,
            sqlite_where=_CANCELLING,
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = _status(AutomationStatus.DISABLED)
    # Copied from the current version so that ingestion finds listeners with one index scan.
    trigger_event: Mapped[str] = mapped_column(String(255))
    current_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("automation_versions.id", use_alter=True)
    )
    deleted_at: Mapped[dt.datetime | None]
    # Set while its runs are being cancelled (a stop with `cancel_runs`, a deletion), a slice
    # per transaction: when the last slice progressed. Its steps see its running runs as
    # cancelled meanwhile; the sweeper finishes a cancel that stopped progressing.
    runs_cancelling_at: Mapped[dt.datetime | None]
    # Where the next slice of that cancel starts: the last run of the slice before, by the
    # order of ix_runs_automation_status_recent (its created_at and id).
    cancelled_through_at: Mapped[dt.datetime | None]
    cancelled_through_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class AutomationVersion(Base):
    """An immutable snapshot of an automation's graph; runs are pinned to one."""

    __tablename__ = "automation_versions"
    __table_args__ = (UniqueConstraint("automation_id", "number"),)

    id: Mapped[uuid.UUID] = _id()
    automation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("automations.id"))
    number: Mapped[int] = mapped_column(Integer)
    graph: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime]


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_automation_recent", "automation_id", "created_at", "id"),
        Index("ix_runs_automation_status_recent", "automation_id", "status", "created_at", "id"),
        Index("ix_runs_contact_status", "contact_id", "status"),
        Index(
            "ix_runs_replay_of",
            "replay_of",
            postgresql_where=text("replay_of IS NOT NULL"),
            sqlite_where=text("replay_of IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    automation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("automations.id"))
    version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("automation_versions.id"))
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("events.id", ondelete="SET NULL"))
    status: Mapped[str] = _status(RunStatus.RUNNING)
    started_at: Mapped[dt.datetime]
    completed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]
    # The run this one replays (a new run of the current version, same event and contact).
    replay_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    # Times an operator retried the run from its failed (or cancelled) step, and the last time.
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_retried_at: Mapped[dt.datetime | None]


class RunStep(Base):
    """One step of one run. A row exists once the step is reached or known to be skipped."""

    __tablename__ = "run_steps"
    __table_args__ = (
        Index("ix_run_steps_due", "due_at", postgresql_where=_CLAIMABLE, sqlite_where=_CLAIMABLE),
        # Timers no message was sent for yet: the sweeper's promotions read only these, not a
        # backlog of queued steps.
        Index(
            "ix_run_steps_undispatched",
            "due_at",
            postgresql_where=_UNDISPATCHED,
            sqlite_where=_UNDISPATCHED,
        ),
        Index(
            "ix_run_steps_lease",
            "lease_expires_at",
            postgresql_where=_RUNNING,
            sqlite_where=_RUNNING,
        ),
        Index(
            "ix_run_steps_wait_event",
            "wait_event",
            postgresql_where=_WAITING,
            sqlite_where=_WAITING,
        ),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    step_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    step_type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = _status(StepStatus.PENDING)
    skip_reason: Mapped[str | None] = mapped_column(String(20))
    # The connection type the run continued on once this step finished.
    branch: Mapped[str | None] = mapped_column(String(20))
    # The event name a waiting wait_for_event step listens for, so ingestion finds it by index.
    wait_event: Mapped[str | None] = mapped_column(String(255))
    # Claims of this step, ever: a worker's claim is its attempt number, and a worker whose
    # lease ran out recognises by it that another one took the step over.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Failed tries since the step was reached (or retried by an operator): what the retry
    # policy counts. Written in the transaction that records the failure, so a failure whose
    # own transaction rolled back (an unexpected exception) counts too.
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Times a worker died while running the step (a pool child lost, a lease taken over) since
    # it was reached or retried by an operator; past a bound the step fails (engine/worker_loss.py).
    # Server default only: rows inserted without the column (most) count none.
    worker_losses: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The claim (attempt) whose loss was last counted: the parent process's report of a lost
    # child and the sweeper's takeover of the same claim count one death, not two.
    lost_attempt: Mapped[int | None] = mapped_column(Integer)
    due_at: Mapped[dt.datetime | None]
    dispatched_at: Mapped[dt.datetime | None]
    # When a worker last claimed the step: the start of its current try, and with
    # dispatched_at, how long its message waited in the queue.
    claimed_at: Mapped[dt.datetime | None]
    # Times the sweeper sent the step again since it was last dispatched normally; each re-send
    # waits longer (engine/redispatch.py). Created as 0, and reset by a timer's promotion.
    redispatch_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    lease_expires_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class StepAttempt(Base):
    """A try of a step that did not end it: a transient failure retried later, an unexpected
    error, or a failure an operator retried. The step row holds the current try."""

    __tablename__ = "step_attempts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "step_key"], ["run_steps.run_id", "run_steps.step_key"], ondelete="CASCADE"
        ),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    step_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    # 1 for the step's first try; the step row's current try comes after the last one here.
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime]
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class BulkOperation(Base):
    """A retry or replay of the runs an operator's filter matched, done by workers in chunks."""

    __tablename__ = "bulk_operations"
    __table_args__ = (
        Index("ix_bulk_operations_automation", "automation_id", "created_at"),
        Index(
            "ix_bulk_operations_running",
            "updated_at",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    automation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("automations.id"))
    action: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = _status(BulkStatus.RUNNING)
    # The filter as given, and its hash: an identical request while this one runs gets it back.
    filter: Mapped[dict[str, Any]] = mapped_column(JSONType)
    filter_hash: Mapped[str] = mapped_column(String(64))
    matched: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime]
    # Last progress; a running operation idle for long lost its message (the sweeper resends).
    updated_at: Mapped[dt.datetime]
    completed_at: Mapped[dt.datetime | None]


class BulkItem(Base):
    """One run of a bulk operation, matched when the operation was created."""

    __tablename__ = "bulk_items"
    __table_args__ = (
        Index(
            "ix_bulk_items_pending",
            "bulk_id",
            "run_id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    bulk_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("bulk_operations.id", ondelete="CASCADE"), primary_key=True
    )
    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = _status(BulkItemStatus.PENDING)
    # The run's retry count when matched: a run retried since then is skipped, not taken twice.
    retries: Mapped[int | None] = mapped_column(Integer)
    # The run a replay created.
    new_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    error: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[dt.datetime | None]


class OutboxEmail(Base):
    """An email written before it is handed to the transport; unique per (run, step)."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("run_id", "step_key"),)

    id: Mapped[uuid.UUID] = _id()
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_key: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = _status(OutboxStatus.SENDING)
    to_address: Mapped[str] = mapped_column(String(320))
    sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    template_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    variables: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # When the try that wrote the row began to make the email, its step claimed.
    created_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None]
    # The rest of the message as the first try rendered it, so that every try sends the same
    # message under the same id (a provider refuses an idempotency key reused with another
    # body). The bodies are dropped once it is sent. reply_to is NULL on rows from before
    # migration 0010, which kept no message: their retries render it again.
    reply_to: Mapped[list[str] | None] = mapped_column(JSONType)
    html: Mapped[str | None] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text)
    unsubscribe_url: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    """An API key, stored as the SHA-256 of its secret: the secret itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the key, so an operator can tell keys apart.
    token_prefix: Mapped[str] = mapped_column(String(16))
    permission: Mapped[str] = mapped_column(String(20), default="full_access")
    created_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]


# The rollup and housekeeping tables live in modules of their own; importing them here puts
# them in Base.metadata.
from models import housekeeping as _housekeeping  # noqa: E402, F401
from models import rollups as _rollups  # noqa: E402, F401
