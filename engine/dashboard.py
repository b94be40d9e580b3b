"""What the dashboard shows: automations with recent activity, runs with contacts, metrics."""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import bulk, metrics, reports
from engine.api_keys import FULL_ACCESS, SETTINGS_KEY_ID, authenticate, hash_secret
from engine.errors import InvalidInput
from engine.graph import Graph
from engine.store import contacts as contact_store
from engine.store import dashboard as dashboard_store
from engine.store import metrics as metrics_store
from engine.store import recovery as recovery_store
from engine.store.paging import Page
from engine.store.reports import RunSummary
from models.enums import BulkAction, RunStatus
from models.tables import Automation, BulkOperation, Contact, Run

RECENT = dt.timedelta(hours=24)
# The bulk operations the Runs tab lists, and the error codes a bulk action offers to narrow to.
RECENT_BULKS = 5
ERROR_CODES = 20
AUTOMATIONS_PAGE = 50
RUNS_PAGE = 25
# An hourly chart over more than a month has too many bars to read.
MAX_BUCKETS = 24 * 31


@dataclass(frozen=True)
class SignedIn:
    key_id: uuid.UUID
    fingerprint: str


@dataclass(frozen=True)
class AutomationRow:
    automation: Automation
    recent: dict[str, int]
    last_run_at: dt.datetime | None


@dataclass(frozen=True)
class AutomationView:
    automation: Automation
    graph: Graph | None
    in_flight: int


@dataclass(frozen=True)
class RunRow:
    run: RunSummary
    contact: Contact | None


@dataclass(frozen=True)
class RunView:
    detail: reports.RunDetail
    contact: Contact | None


@dataclass(frozen=True)
class MetricsView:
    """The Metrics tab's numbers, aggregated in the database for runs created in the window."""

    window: metrics.Window
    started: list[metrics.Bucket]
    finished: list[metrics.Bucket]
    by_status: dict[str, int]
    finished_runs: int
    percentiles: dict[str, float | None]
    steps: list[metrics.StepMetrics]
    emails_sent: int
    emails_skipped_unsubscribed: int
    recovery: metrics_store.RecoveryCounts


@dataclass(frozen=True)
class RecoveryOffer:
    """What the Runs tab offers: how many failed runs a bulk retry or replay would take now,
    and the latest bulk operations, to follow them."""

    retryable: int
    replayable: int
    recent: list[BulkOperation]


@dataclass(frozen=True)
class BulkPlan:
    """A dry run of a bulk retry or replay of failed runs, shown before it is confirmed."""

    request: bulk.BulkRequest
    matched: int
    sample: list[RunRow]
    # Error codes of every failed run the action could take, to narrow it to one.
    error_codes: list[tuple[str | None, int]]


def key_fingerprint(token_hash: str) -> str:
    """A short part of a key's hash, so that a session ends when its key is replaced."""
    return token_hash[:16]


def sign_in(
    session: Session, secret: str, *, settings_key: str | None, now: dt.datetime
) -> SignedIn:
    """The full-access key behind a secret typed into the sign-in form (a use of the key)."""
    secret = secret.strip()
    caller = authenticate(session, secret, settings_key=settings_key, now=now) if secret else None
    if caller is None:
        raise InvalidInput("This API key is not valid.", field="api_key")
    if caller.permission != FULL_ACCESS:
        raise InvalidInput(
            "This key only has sending access: sign in with a full-access key.", field="api_key"
        )
    return SignedIn(caller.key_id, key_fingerprint(hash_secret(secret)))


def key_is_active(session: Session, signed: SignedIn, *, settings_key: str | None) -> bool:
    """Whether the key a session was opened with still exists, unchanged and with full access."""
    if signed.key_id == SETTINGS_KEY_ID:
        if not settings_key:
            return False
        expected = key_fingerprint(hash_secret(settings_key))
        return hmac.compare_digest(signed.fingerprint, expected)
    found = dashboard_store.api_key_hash(session, signed.key_id)
    if found is None or found[1] != FULL_ACCESS:
        return False
    return hmac.compare_digest(signed.fingerprint, key_fingerprint(found[0]))


def overview(
    session: Session, *, after: uuid.UUID | None, before: uuid.UUID | None, now: dt.datetime
) -> Page[AutomationRow]:
    """Automations newest first, each with its last 24 hours of runs by status and last run."""
    page = reports.list_automations(
        session, status=None, limit=AUTOMATIONS_PAGE, after=after, before=before
    )
    ids = [automation.id for automation in page.items]
    counts = dashboard_store.recent_run_counts(session, ids, now - RECENT)
    latest = dashboard_store.last_run_times(session, ids)
    rows = [
        AutomationRow(
            automation,
            {str(status): counts.get(automation.id, {}).get(status, 0) for status in RunStatus},
            latest.get(automation.id),
        )
        for automation in page.items
    ]
    return Page(rows, page.has_more)


def automation_view(session: Session, automation_id: uuid.UUID) -> AutomationView:
    """The automation, its current graph and how many of its runs are in flight."""
    detail = reports.get_automation(session, automation_id)
    graph = Graph.from_dict(detail.graph) if detail.graph["steps"] else None
    return AutomationView(
        detail.automation, graph, dashboard_store.running_count(session, automation_id)
    )


def step_counts(
    session: Session,
    automation_id: uuid.UUID,
    graph: Graph | None,
    *,
    since: dt.datetime,
    until: dt.datetime,
) -> dict[str, metrics.StepMetrics]:
    """Runs that reached, completed, failed and skipped each step, for runs created in a window."""
    window = metrics.Window(since, until, metrics.Granularity.HOUR)
    found = metrics.step_counts(session, automation_id, window, graph)
    return {item.key: item for item in found}


def runs(
    session: Session,
    automation_id: uuid.UUID,
    *,
    statuses: Collection[str],
    after: uuid.UUID | None,
    before: uuid.UUID | None,
) -> Page[RunRow]:
    """One page of the automation's runs, newest first, each with its contact."""
    page = reports.list_runs(
        session,
        automation_id,
        status=",".join(statuses) or None,
        limit=RUNS_PAGE,
        after=after,
        before=before,
    )
    wanted = {run.contact_id for run in page.items if run.contact_id is not None}
    contacts = dashboard_store.contacts_by_id(session, wanted)
    rows = [
        RunRow(run, contacts.get(run.contact_id) if run.contact_id else None) for run in page.items
    ]
    return Page(rows, page.has_more)


def run_view(
    session: Session,
    automation_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    graph: Callable[[Session, uuid.UUID], Graph],
) -> RunView:
    """The run with its steps in graph order, its trigger event and its contact."""
    detail = reports.get_run(session, automation_id, run_id, graph=graph)
    contact_id = detail.run.contact_id
    contact = contact_store.get_contact(session, contact_id) if contact_id else None
    return RunView(detail, contact)


def metrics_view(
    session: Session,
    automation_id: uuid.UUID,
    *,
    start: str | None,
    end: str | None,
    granularity: str | None,
    now: dt.datetime,
) -> MetricsView:
    """The automation's metrics for runs created in [start, end), counted by the database."""
    window = metrics.parse_window(start, end, granularity, now=now)
    if len(metrics.bucket_starts(window)) > MAX_BUCKETS:
        raise InvalidInput(
            "Hourly charts cover at most 31 days: choose days or a shorter range.",
            field="granularity",
        )
    found = metrics.window_metrics(session, automation_id, window)
    return MetricsView(
        window=window,
        started=found.runs.series,
        finished=metrics.run_series(session, automation_id, window, finished=True),
        by_status=found.runs.by_status,
        finished_runs=found.runs.finished_runs,
        percentiles=found.runs.percentiles,
        steps=found.steps,
        emails_sent=found.emails_sent,
        emails_skipped_unsubscribed=found.emails_skipped_unsubscribed,
        recovery=found.recovery,
    )


def failed_runs(
    automation_id: uuid.UUID, action: BulkAction, *, error_code: str | None
) -> bulk.BulkRequest:
    """A bulk request for the automation's failed runs, of one error code if given."""
    body = {"status": str(RunStatus.FAILED)}
    if error_code:
        body["error_code"] = error_code
    return bulk.parse_request(automation_id, action, body)


def recovery_offer(
    session: Session, automation_id: uuid.UUID, *, failed_shown: bool
) -> RecoveryOffer:
    """The Runs tab's bulk actions: counted only when its filter shows failed runs."""
    recent = recovery_store.recent_bulks(session, automation_id, RECENT_BULKS)
    if not failed_shown:
        return RecoveryOffer(0, 0, recent)
    retry = failed_runs(automation_id, BulkAction.RETRY, error_code=None)
    replay = failed_runs(automation_id, BulkAction.REPLAY, error_code=None)
    return RecoveryOffer(
        recovery_store.count_matching(session, retry.match),
        recovery_store.count_matching(session, replay.match),
        recent,
    )


def bulk_plan(
    session: Session, automation_id: uuid.UUID, action: BulkAction, *, error_code: str | None
) -> BulkPlan:
    """How many failed runs (of one error code, if given) the action would take, the newest
    of them with their contacts, and the error codes it could be narrowed to."""
    request = failed_runs(automation_id, action, error_code=error_code)
    found = bulk.preview(session, request)
    every = failed_runs(automation_id, action, error_code=None)
    codes = recovery_store.error_codes(session, every.match, ERROR_CODES)
    wanted = {run.contact_id for run in found.sample if run.contact_id is not None}
    contacts = dashboard_store.contacts_by_id(session, wanted)
    rows = [
        RunRow(_summary(run), contacts.get(run.contact_id) if run.contact_id else None)
        for run in found.sample
    ]
    return BulkPlan(request, found.matched, rows, codes)


def _summary(run: Run) -> RunSummary:
    return RunSummary(
        run.id,
        run.automation_id,
        run.contact_id,
        run.status,
        run.started_at,
        run.completed_at,
        run.created_at,
    )
