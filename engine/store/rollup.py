"""The hourly rollup, kept in the transaction of every run and step state change.

The statements that change a run's or a step's status note what changed here (`note_*`); the
notes are summed per rollup row and written just before the transaction commits, by an upsert
per table (INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n), tables in one order and
rows in key order. On PostgreSQL the upserts are one statement, each table's rows read in
order from one JSON array, each upsert run after the one before it. So the rollup commits or
rolls back with the change it counts (a savepoint rolled back takes its notes with it), and a
hot row (one automation, one hour) is locked only for the last statement of a transaction,
always in the same order: no deadlock between two writers. A statement that its caller knows
to be the transaction's last write may carry the upsert instead (`take_for_statement`): an
executed step followed by one step counts both in its finish statement, one round trip fewer;
and a step that ends its run counts everything in the run's UPDATE (`take_with_run_end`).
An ingestion's store statement upserts the counts of what it writes, unless it finds waits
to resume or an idempotency key taken (`offer`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, event, select
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from engine.percentiles import bucket_of
from engine.store.core import RUNS, execute
from engine.store.rollup_notes import (
    Notes,
    json_params,
    merge_layers,
    noted_runs,
    rows_to_write,
)
from engine.store.rollup_upserts import upsert_all, upsert_statement
from models.enums import RunStatus, SkipReason, StepStatus

# Runs whose time counts towards the duration percentiles: they ended by themselves.
TIMED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.SKIPPED})


def hour_of(moment: dt.datetime) -> int:
    """Whole hours since the Unix epoch (UTC): a rollup row's `hour`."""
    return int(moment.timestamp() // 3600)


def hour_start(hour: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(hour * 3600, dt.UTC)


def step_column(status: str, skip_reason: str | None) -> str | None:
    """The step_rollups counter of a step that ended so; None for a step still in flight."""
    if status == StepStatus.SKIPPED:
        return f"skipped_{skip_reason or SkipReason.BRANCH_NOT_TAKEN}"
    if status in (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.CANCELLED):
        return str(status)
    return None


_LAYERS = "rollup_notes"


def _notes(session: Session) -> Notes:
    """The notes of the innermost open transaction (a savepoint has its own)."""
    layers: dict[SessionTransaction, Notes] | None = session.info.get(_LAYERS)
    if layers is None:
        layers = session.info[_LAYERS] = {}
    current = session.get_nested_transaction() or session.get_transaction()
    assert current is not None, "rollup notes are taken inside a transaction"
    notes = layers.get(current)
    if notes is None:  # built only when missing: a note is taken per row a cancel ends
        notes = layers[current] = Notes()
    return notes


# --- what the store's writers note ---------------------------------------------------------


def note_runs_created(session: Session, rows: Iterable[Mapping[str, Any]]) -> None:
    """New runs (rows as runs.insert_runs takes them), counted by their status."""
    _count_runs(_notes(session), rows)


def _count_runs(notes: Notes, rows: Iterable[Mapping[str, Any]]) -> None:
    for row in rows:
        run_id = row["id"]
        notes.known[run_id] = (row["automation_id"], hour_of(row["created_at"]))
        for column in _run_columns(row):
            notes.runs[(run_id, None, column)] += 1


def _run_columns(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The run_rollups counters a new run adds one to."""
    status = str(row["status"])
    return (status,) if row.get("replay_of") is None else (status, "replays")


def note_run_known(
    session: Session,
    run_id: uuid.UUID,
    automation_id: uuid.UUID,
    created_at: dt.datetime,
    *,
    locked_started_at: dt.datetime | None = None,
) -> None:
    """The rollup key of a run, so that the flush need not read it; and, from a caller that
    read it with the run row locked, when it started (`take_with_run_end` needs it)."""
    notes = _notes(session)
    notes.known[run_id] = (automation_id, hour_of(created_at))
    if locked_started_at is not None:
        notes.started[run_id] = locked_started_at


def note_run_ended(
    session: Session,
    run_id: uuid.UUID,
    status: str,
    *,
    started_at: dt.datetime | None,
    ended_at: dt.datetime | None,
    undo: bool = False,
) -> None:
    """A running run ended (or, with `undo`, an ended run went back to running)."""
    sign = -1 if undo else 1
    notes = _notes(session)
    notes.runs[(run_id, None, str(RunStatus.RUNNING))] -= sign
    notes.runs[(run_id, None, str(status))] += sign
    if ended_at is None:
        return
    notes.runs[(run_id, hour_of(ended_at), f"ended_{status}")] += sign
    if status in TIMED and started_at is not None:
        notes.durations[(run_id, bucket_of((ended_at - started_at).total_seconds()))] += sign


@dataclass(frozen=True)
class EndedRun:
    """A run that ended, as `note_runs_cancelled` takes it: its rollup key."""

    automation_id: uuid.UUID
    created_at: dt.datetime


@dataclass(frozen=True)
class EndedStep:
    """A step that ended, as `note_runs_cancelled` takes it, with its run's rollup key."""

    automation_id: uuid.UUID
    created_at: dt.datetime
    step_key: str
    step_type: str


def note_runs_cancelled(
    session: Session, ended_at: dt.datetime, runs: Iterable[EndedRun], steps: Iterable[EndedStep]
) -> None:
    """`note_run_ended` and `note_step_ended` for running runs and steps in flight cancelled
    at once (an automation's runs), summed by rollup key as they are noted. A cancelled run's
    time is not a duration (TIMED)."""
    notes = _notes(session)
    cancelled, ended = str(RunStatus.CANCELLED), hour_of(ended_at)
    for run in runs:
        created = hour_of(run.created_at)
        notes.keyed_runs[(run.automation_id, created, str(RunStatus.RUNNING))] -= 1
        notes.keyed_runs[(run.automation_id, created, cancelled)] += 1
        notes.keyed_runs[(run.automation_id, ended, f"ended_{cancelled}")] += 1
    for step in steps:
        created = hour_of(step.created_at)
        notes.keyed_steps[
            (step.automation_id, created, step.step_key, step.step_type, cancelled)
        ] += 1


def note_retry(session: Session, run_id: uuid.UUID, *, first: bool) -> None:
    notes = _notes(session)
    notes.runs[(run_id, None, "retries")] += 1
    if first:
        notes.runs[(run_id, None, "retried_runs")] += 1


def note_steps_created(session: Session, rows: Iterable[Mapping[str, Any]]) -> None:
    """New step rows (as runs.insert_steps takes them): one more step, and how it ended."""
    _count_steps(_notes(session), rows)


def _count_steps(notes: Notes, rows: Iterable[Mapping[str, Any]]) -> None:
    for row in rows:
        key = (row["run_id"], row["step_key"], str(row["step_type"]))
        for column in _step_columns(row):
            notes.steps[(*key, column)] += 1


def _step_columns(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The step_rollups counters a new step row adds one to: one more step, and how it ended."""
    status = row["status"]
    column = step_column(status, row.get("skip_reason"))
    if column is None:
        return ("steps",)
    return ("steps", column, "unreached") if status == StepStatus.SKIPPED else ("steps", column)


def note_step_ended(
    session: Session,
    run_id: uuid.UUID,
    step_key: str,
    step_type: str,
    status: str,
    skip_reason: str | None = None,
    *,
    undo: bool = False,
) -> None:
    """A step in flight ended so (or, with `undo`, a step that had ended is in flight again)."""
    column = step_column(status, skip_reason)
    if column is not None:
        _notes(session).steps[(run_id, step_key, str(step_type), column)] += -1 if undo else 1


# --- written before the commit -------------------------------------------------------------


def track(sessions: sessionmaker[Session]) -> None:
    """Write the rollup notes of every transaction of these sessions before it commits."""
    event.listen(sessions, "before_commit", _before_commit)
    event.listen(sessions, "after_soft_rollback", _after_rollback)


def _before_commit(session: Session) -> None:
    layers: dict[SessionTransaction, Notes] = session.info.get(_LAYERS, {})
    nested = session.get_nested_transaction()
    if nested is not None:  # a savepoint released: its notes join its parent's
        notes = layers.pop(nested, None)
        if notes is not None and nested.parent is not None:
            layers.setdefault(nested.parent, Notes()).merge(notes)
        return
    if not layers:  # nothing noted: a transaction that changed no status
        return
    merged = merge_layers(layers.values())
    layers.clear()
    if not merged.counts_nothing():  # most commits: a statement took the notes already
        write(session, merged)


def _after_rollback(session: Session, previous: SessionTransaction) -> None:
    layers: dict[SessionTransaction, Notes] = session.info.get(_LAYERS, {})
    if previous.nested:
        layers.pop(previous, None)
    else:
        layers.clear()


def write(session: Session, notes: Notes) -> None:
    """Add the notes to the rollup tables, per hour and per day: an upsert per table, rows in
    key order; one statement on PostgreSQL."""
    written = rows_to_write(notes, _run_keys(session, notes))
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and written:
        tables = tuple(table for table, _ in written)
        execute(session, upsert_all(tables), json_params(written))
        return
    for table, rows in written:
        execute(session, upsert_statement(dialect, table), rows)


def take_for_statement(session: Session) -> tuple[Table, dict[str, str]] | None:
    """PostgreSQL: the transaction's notes as one table's rows, for the statement that ends its
    writes to upsert in a CTE (`upsert_cte`); the notes are then taken, not written at commit.

    None, and the notes stay for the commit, when they fall in no table or in several (whose
    order one statement's CTEs would not keep), when a savepoint is open (it could roll back
    without the statement), or when a run's rollup key would take a read. The caller writes
    nothing after that statement, so the rollup rows are still the last rows it locks.
    """
    merged = _mergeable(session)
    if merged is None:
        return None
    written = rows_to_write(merged, merged.known)
    if len(written) != 1:
        return None
    _taken(session, merged)
    table, _ = written[0]
    return table, json_params(written)


def take_with_run_end(
    session: Session, run_id: uuid.UUID, status: str, ended_at: dt.datetime
) -> tuple[tuple[Table, ...], dict[str, str]] | None:
    """PostgreSQL: `note_run_ended` for a running run that this transaction holds locked, and
    the transaction's notes, in every table, for the statement that ends the run and writes
    nothing after it to upsert in CTEs after its own (`upsert_all_after`).

    None, and nothing noted, when `take_for_statement` would refuse for a reason other than
    the number of tables, or when the run's start was not read under its lock (note_run_known).
    The run row is locked already: the rollup rows are still the last rows the caller locks.
    """
    merged = _mergeable(session)
    started_at = merged.started.get(run_id) if merged is not None else None
    if merged is None or started_at is None:
        return None
    note_run_ended(session, run_id, status, started_at=started_at, ended_at=ended_at)
    merged = _mergeable(session)
    assert merged is not None
    written = rows_to_write(merged, merged.known)
    _taken(session, merged)
    return tuple(table for table, _ in written), json_params(written)


@dataclass(frozen=True)
class Offer:
    """The transaction's notes as rows of their tables, for a statement that may upsert them."""

    tables: tuple[Table, ...]
    params: dict[str, str]
    notes: Notes


def offer(
    session: Session, *, runs: Iterable[Mapping[str, Any]], steps: Iterable[Mapping[str, Any]]
) -> Offer | None:
    """PostgreSQL: the transaction's notes with those of these new runs and steps (rows as
    `note_runs_created` and `note_steps_created` take them), for a statement that upserts them
    only if it wrote every one of these rows and turns out to be the transaction's last write
    (rollup_upserts's `conditional_upserts`); `accepted` once it has. Nothing is noted here:
    if the statement did not upsert, its caller notes what it wrote, for the commit. None as
    `take_for_statement`, whatever the number of tables."""
    extra = Notes()
    _count_new(extra, runs, steps)
    merged = _mergeable(session, extra)
    if merged is None:
        return None
    written = rows_to_write(merged, merged.known)
    if not written:
        return None
    return Offer(tuple(table for table, _ in written), json_params(written), merged)


def _count_new(
    notes: Notes, runs: Iterable[Mapping[str, Any]], steps: Iterable[Mapping[str, Any]]
) -> None:
    """New runs and their steps counted as `_count_runs` and `_count_steps` do, but by rollup
    key (automation, hour created) rather than by run: the runs of one ingestion mostly share
    one key, and `rows_to_write` then sums a few counters instead of three per run."""
    for row in runs:
        owner, hour = notes.known[row["id"]] = (row["automation_id"], hour_of(row["created_at"]))
        for column in _run_columns(row):
            notes.keyed_runs[(owner, hour, column)] += 1
    for row in steps:
        owner, hour = notes.known[row["run_id"]]
        step_key, step_type = row["step_key"], str(row["step_type"])
        for column in _step_columns(row):
            notes.keyed_steps[(owner, hour, step_key, step_type, column)] += 1


def accepted(session: Session, offered: Offer) -> None:
    """The statement upserted the offer's notes: the commit writes them no more. Called right
    after it, before anything else is noted."""
    _taken(session, offered.notes)


def _mergeable(session: Session, extra: Notes | None = None) -> Notes | None:
    """The transaction's notes merged (and `extra`), if a statement may take them (see
    take_for_statement)."""
    if session.get_nested_transaction() is not None:
        return None
    layers: dict[SessionTransaction, Notes] = session.info.get(_LAYERS, {})
    if session.get_transaction() is None or (not layers and extra is None):
        return None
    merged = merge_layers(layers.values(), extra)
    return merged if noted_runs(merged) <= merged.known.keys() else None


def _taken(session: Session, merged: Notes) -> None:
    """The notes are a statement's now: only what the transaction knows of its runs stays."""
    layers: dict[SessionTransaction, Notes] = session.info.setdefault(_LAYERS, {})
    current = session.get_transaction()
    assert current is not None
    layers.clear()
    layers[current] = Notes(known=merged.known, started=merged.started)


_RUN_KEYS = select(RUNS.c.id, RUNS.c.automation_id, RUNS.c.created_at).where(
    RUNS.c.id.in_(bindparam("ids", expanding=True))
)


def _run_keys(session: Session, notes: Notes) -> dict[uuid.UUID, tuple[uuid.UUID, int]]:
    """(automation, hour created) of every run noted; read for those the notes do not know."""
    keys = dict(notes.known)
    missing = sorted(noted_runs(notes) - keys.keys())
    if missing:
        rows = execute(session, _RUN_KEYS, {"ids": missing}).all()
        for run_id, owner, created in (tuple(row) for row in rows):
            keys[run_id] = (owner, hour_of(created))
    return keys
