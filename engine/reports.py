"""What an operator reads: automations listed and opened, runs listed and opened step by step."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from engine.errors import InvalidInput, NotFound
from engine.graph import Graph
from engine.store import attempts as attempt_store
from engine.store import automations as automation_store
from engine.store import recovery as recovery_store
from engine.store import reports as report_store
from engine.store.paging import Page
from engine.store.reports import JsonPage, RunSummary
from models.enums import STEP_ACTIVE, AutomationStatus, RunStatus, StepStatus
from models.tables import Automation, Event, Run, RunStep, StepAttempt

PAGE_SIZE = 20
# Omitting `limit` lists every run (Resend's behaviour) up to this many; `has_more` tells the rest.
RUNS_CAP = 1000
# Pages of up to this many runs are cheaper as rows (about 10 µs a run in Python) than written
# as JSON by PostgreSQL (a statement that takes about 1 ms longer to build and run).
WRITTEN_BEYOND = 100


@dataclass(frozen=True)
class AutomationDetail:
    automation: Automation
    graph: dict[str, Any]


@dataclass(frozen=True)
class Attempt:
    """One try of a step, as the run's audit shows it."""

    number: int
    status: str
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    error: dict[str, Any] | None


@dataclass(frozen=True)
class RunDetail:
    run: Run
    event: Event | None
    steps: list[RunStep]
    attempts: dict[str, list[Attempt]] = field(default_factory=dict)
    # The runs that replay this one.
    replayed_by: list[uuid.UUID] = field(default_factory=list)


def require_automation(session: Session, automation_id: uuid.UUID) -> Automation:
    """The automation, unless it does not exist or was deleted (NotFound)."""
    automation = automation_store.get_automation(session, automation_id)
    if automation is None:
        raise NotFound("Automation not found")
    return automation


def list_automations(
    session: Session,
    *,
    status: str | None,
    limit: int | None,
    after: uuid.UUID | None,
    before: uuid.UUID | None,
) -> Page[Automation]:
    """Automations newest first, optionally only `enabled` or `disabled` ones."""
    if status is not None and status not in set(AutomationStatus):
        raise InvalidInput("`status` must be `enabled` or `disabled`", field="status")
    size = PAGE_SIZE if limit is None else limit
    return report_store.automation_page(
        session, status=status, limit=size, after=after, before=before
    )


def get_automation(session: Session, automation_id: uuid.UUID) -> AutomationDetail:
    """The automation with the graph of its current version."""
    automation = require_automation(session, automation_id)
    graph = None
    if automation.current_version_id is not None:
        graph = automation_store.version_graph(session, automation.current_version_id)
    return AutomationDetail(automation, graph or {"steps": [], "connections": []})


def parse_run_statuses(text: str | None) -> frozenset[RunStatus] | None:
    """The runs-list filter `running,failed` as statuses; None (no filter) when empty."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        return None
    for name in names:
        if name not in set(RunStatus):
            raise InvalidInput(
                f"`status` has an unknown run status `{name}`: use any of "
                f"{', '.join(RunStatus)}, separated by commas",
                field="status",
            )
    return frozenset(RunStatus(name) for name in names)


def _run_page_asked(
    status: str | None, limit: int | None
) -> tuple[frozenset[RunStatus] | None, int]:
    """The statuses and page size asked for."""
    return parse_run_statuses(status), RUNS_CAP if limit is None else limit


P = TypeVar("P", bound=JsonPage | Page[RunSummary])


def _runs_of_automation(session: Session, automation_id: uuid.UUID, read: Callable[[], P]) -> P:
    """`read()`'s page, whose statement finds runs only if the automation exists (not
    deleted): the automation is looked up on its own only when the page is empty or its cursor
    refused, so that an automation that is not there is what the answer says (404)."""
    try:
        page = read()
    except InvalidInput:
        require_automation(session, automation_id)
        raise
    if not page.items:
        require_automation(session, automation_id)
    return page


def list_runs(
    session: Session,
    automation_id: uuid.UUID,
    *,
    status: str | None,
    limit: int | None,
    after: uuid.UUID | None,
    before: uuid.UUID | None,
) -> Page[RunSummary]:
    """The automation's runs newest first; without `limit`, all of them up to RUNS_CAP."""
    statuses, size = _run_page_asked(status, limit)
    return _runs_of_automation(
        session,
        automation_id,
        lambda: report_store.run_page(
            session, automation_id, statuses=statuses, limit=size, after=after, before=before
        ),
    )


def list_runs_written(
    session: Session,
    automation_id: uuid.UUID,
    *,
    status: str | None,
    limit: int | None,
    after: uuid.UUID | None,
    before: uuid.UUID | None,
) -> JsonPage | Page[RunSummary]:
    """list_runs's page; a page longer than WRITTEN_BEYOND runs (the default page of up to a
    thousand) with its items written as JSON by the database where it can (PostgreSQL), so
    that it costs no Python per run; the rows otherwise."""
    statuses, size = _run_page_asked(status, limit)

    def read() -> JsonPage | Page[RunSummary]:
        if size > WRITTEN_BEYOND:
            written = report_store.run_page_json(
                session, automation_id, statuses=statuses, limit=size, after=after, before=before
            )
            if written is not None:
                return written
        return report_store.run_page(
            session, automation_id, statuses=statuses, limit=size, after=after, before=before
        )

    return _runs_of_automation(session, automation_id, read)


def get_run(
    session: Session,
    automation_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    graph: Callable[[Session, uuid.UUID], Graph],
) -> RunDetail:
    """The run, its trigger event and its step rows in the graph order of its version
    (`graph`: Runtime.graph, which keeps the versions' graphs, as they never change)."""
    found = report_store.run_with_event(session, automation_id, run_id)
    if found is None:
        require_automation(session, automation_id)  # which of the two is not found
        raise NotFound("Run not found")
    run, event = found
    order = graph(session, run.version_id).order()
    steps = in_graph_order(report_store.run_steps(session, run_id), order)
    archived = attempt_store.attempts_by_step(session, run_id)
    return RunDetail(
        run,
        event,
        steps,
        attempts={
            step.step_key: step_attempts(step, archived.get(step.step_key, [])) for step in steps
        },
        replayed_by=recovery_store.replays_of(session, run_id),
    )


def step_attempts(step: RunStep, archived: list[StepAttempt]) -> list[Attempt]:
    """The step's earlier tries, then its current one (if it was ever tried)."""
    tries = [Attempt(a.number, a.status, a.started_at, a.completed_at, a.error) for a in archived]
    if not archived and step.started_at is None and step.status != StepStatus.RUNNING:
        return []  # never tried: a branch not taken, or a step still to come
    started = step.started_at
    if archived and step.status == StepStatus.PENDING:
        started = None  # the next try is due, not begun
    elif archived and (started is None or started < archived[-1].completed_at):
        # A step tried again keeps its first start; its current try began at its last claim.
        started = step.claimed_at
    completed = step.completed_at if step.status not in STEP_ACTIVE else None
    error = step.error if step.status == StepStatus.FAILED else None
    tries.append(Attempt(len(tries) + 1, step.status, started, completed, error))
    return tries


def in_graph_order(steps: list[RunStep], order: list[str]) -> list[RunStep]:
    """Steps sorted by their key's place in `order`; keys not in it keep their order, last."""
    rank = {key: index for index, key in enumerate(order)}
    return sorted(steps, key=lambda step: rank.get(step.step_key, len(rank)))
